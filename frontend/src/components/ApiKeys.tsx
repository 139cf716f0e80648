'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, call } from '@/lib/api';
import { age } from '@/lib/format';
import type { Scope } from '@/lib/me';
import { ProblemView } from './ProblemView';

const SCOPES: Scope[] = ['jobs:read', 'jobs:write', 'schedules:write', 'admin'];

/** The tenant's API keys: create (the secret is shown once), revoke. */
export function ApiKeys() {
  const client = useQueryClient();
  const keys = useQuery({ queryKey: ['api-keys'], queryFn: () => call(() => api.GET('/v1/api-keys')) });
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Scope[]>(['jobs:read']);
  const create = useMutation({
    mutationFn: () => call(() => api.POST('/v1/api-keys', { body: { name, scopes } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['api-keys'] }),
  });
  const revoke = useMutation({
    mutationFn: (id: string) => call(() => api.DELETE('/v1/api-keys/{id}', { params: { path: { id } } })),
    onSettled: () => client.invalidateQueries({ queryKey: ['api-keys'] }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  const toggle = (scope: Scope) =>
    setScopes(scopes.includes(scope) ? scopes.filter((s) => s !== scope) : [...scopes, scope]);
  return (
    <section className="panel" aria-label="API keys">
      <h2>API keys</h2>
      <ProblemView error={keys.error ?? create.error ?? revoke.error} />
      {create.data?.key && (
        <p role="status">
          New key (shown once): <code data-testid="new-key">{create.data.key}</code>
        </p>
      )}
      <form className="filters" onSubmit={submit}>
        <label>
          name
          <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={100} />
        </label>
        {SCOPES.map((s) => (
          <label key={s}>
            <input type="checkbox" checked={scopes.includes(s)} onChange={() => toggle(s)} /> {s}
          </label>
        ))}
        <button type="submit" disabled={scopes.length === 0 || create.isPending}>
          Create key
        </button>
      </form>
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>prefix</th>
            <th>scopes</th>
            <th>last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {keys.data?.api_keys.map((k) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}</code>
              </td>
              <td>{k.scopes.join(' ')}</td>
              <td>{k.revoked_at ? <span className="state-dead">revoked</span> : age(k.last_used_at)}</td>
              <td>
                {!k.revoked_at && (
                  <button
                    type="button"
                    onClick={() =>
                      window.confirm(`Revoke key ${k.name}? It stops working at once.`) && revoke.mutate(k.id)
                    }
                  >
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

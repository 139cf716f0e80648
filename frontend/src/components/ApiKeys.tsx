'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, call, type Schemas } from '@/lib/api';
import { age } from '@/lib/format';
import type { Scope } from '@/lib/me';
import { DataTable, type Column } from './DataTable';
import { Field } from './Field';
import { ProblemView } from './ProblemView';

const SCOPES: Scope[] = ['jobs:read', 'jobs:write', 'schedules:write', 'admin'];

type Key = Schemas['ApiKeyView'];

const COLUMNS: Column<Key>[] = [
  { header: 'name', cell: (k) => k.name },
  { header: 'prefix', cell: (k) => <code>{k.prefix}</code> },
  { header: 'scopes', cell: (k) => k.scopes.join(' ') },
  {
    header: 'last used',
    cell: (k) => (k.revoked_at ? <span className="state-dead">revoked</span> : age(k.last_used_at)),
  },
];

function RevokeButton({ k, onRevoke }: { k: Key; onRevoke: (id: string) => void }) {
  return (
    <button
      type="button"
      onClick={() => window.confirm(`Revoke key ${k.name}? It stops working at once.`) && onRevoke(k.id)}
    >
      Revoke
    </button>
  );
}

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
        <Field label="name" value={name} onChange={setName} required maxLength={100} />
        {SCOPES.map((s) => (
          <label key={s}>
            <input type="checkbox" checked={scopes.includes(s)} onChange={() => toggle(s)} /> {s}
          </label>
        ))}
        <button type="submit" disabled={scopes.length === 0 || create.isPending}>
          Create key
        </button>
      </form>
      <DataTable
        columns={[
          ...COLUMNS,
          { header: '', cell: (k) => !k.revoked_at && <RevokeButton k={k} onRevoke={revoke.mutate} /> },
        ]}
        rows={keys.data?.api_keys}
        rowKey={(k) => k.id}
        noun="API keys"
        empty="No API keys yet."
      />
    </section>
  );
}

'use client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, call, type Schemas } from '@/lib/api';
import { DataTable } from './DataTable';
import { Field } from './Field';
import { ProblemView } from './ProblemView';

type Role = Schemas['RoleName'];
const ROLES: Role[] = ['owner', 'admin', 'member', 'viewer'];

/** The tenant's members: add one by email or change a role; remove. */
export function Members() {
  const client = useQueryClient();
  const members = useQuery({ queryKey: ['members'], queryFn: () => call(() => api.GET('/v1/members')) });
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<Role>('member');
  const refresh = () => client.invalidateQueries({ queryKey: ['members'] });
  const set = useMutation({
    mutationFn: () => call(() => api.PUT('/v1/members', { body: { email, role } })),
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: (user_id: string) => call(() => api.DELETE('/v1/members/{user_id}', { params: { path: { user_id } } })),
    onSettled: refresh,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    set.mutate();
  };
  return (
    <section className="panel" aria-label="Members">
      <h2>Members</h2>
      <ProblemView error={members.error ?? set.error ?? remove.error} />
      <form className="filters" onSubmit={submit}>
        <Field label="email" type="email" value={email} onChange={setEmail} required />
        <label>
          role
          <select value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={set.isPending}>
          Add or change
        </button>
      </form>
      <DataTable
        columns={[
          { header: 'email', cell: (m) => m.email },
          { header: 'role', cell: (m) => m.role },
          {
            header: '',
            cell: (m) => (
              <button type="button" onClick={() => window.confirm(`Remove ${m.email}?`) && remove.mutate(m.user_id)}>
                Remove
              </button>
            ),
          },
        ]}
        rows={members.data?.members}
        rowKey={(m) => m.user_id}
        noun="members"
        empty="No members yet."
      />
    </section>
  );
}

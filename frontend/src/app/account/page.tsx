'use client';
import { ApiKeys } from '@/components/ApiKeys';
import { Members } from '@/components/Members';
import { ProblemView } from '@/components/ProblemView';
import { TenantSwitch } from '@/components/TenantSwitch';
import { can, useMe } from '@/lib/me';

export default function Account() {
  const me = useMe();
  if (me.isPending) return <p className="empty">Loading…</p>;
  if (!me.data) return <ProblemView error={me.error ?? 'Sign in first.'} />;
  const m = me.data;
  return (
    <>
      <h1>Account</h1>
      <section className="panel">
        <dl className="fields">
          <dt>signed in as</dt>
          <dd>{m.email ?? `API key ${m.id}`}</dd>
          <dt>tenant</dt>
          <dd>{m.tenant_id}</dd>
          <dt>role</dt>
          <dd>{m.role ?? '—'}</dd>
          <dt>scopes</dt>
          <dd data-testid="scopes">{m.scopes.join(' ')}</dd>
        </dl>
        <TenantSwitch me={m} />
      </section>
      {can(m, 'admin') ? (
        <>
          <ApiKeys />
          <Members />
        </>
      ) : (
        <p className="muted">Keys and members are managed by the tenant&apos;s admins.</p>
      )}
    </>
  );
}

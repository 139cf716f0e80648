'use client';
import Link from 'next/link';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import { age, isFinished } from '@/lib/format';
import { can, useMe } from '@/lib/me';
import { ProblemView } from './ProblemView';
import { StateBadge } from './StateBadge';

/** One job: its fields, payload, result and failed attempts; cancel, retry, clone. */
export function JobDetail({ id }: { id: string }) {
  const client = useQueryClient();
  const writer = can(useMe().data, 'jobs:write');
  const job = useQuery({
    queryKey: ['job', id],
    queryFn: () => call(() => api.GET('/v1/jobs/{id}', { params: { path: { id } } })),
    // Followed until it finishes (live updates arrive with the events stream).
    refetchInterval: (q) => (q.state.data && isFinished(q.state.data.state) ? false : 1000),
  });
  const act = useMutation({
    mutationFn: (action: 'cancel' | 'retry') =>
      action === 'cancel'
        ? call(() => api.POST('/v1/jobs/{id}/cancel', { params: { path: { id } } }))
        : call(() => api.POST('/v1/jobs/{id}/retry', { params: { path: { id } } })),
    onSuccess: (updated) => client.setQueryData(['job', id], updated),
  });
  if (job.isPending) return <p className="empty">Loading job…</p>;
  if (!job.data) return <ProblemView error={job.error} />;
  const j = job.data;
  const confirmThen = (action: 'cancel' | 'retry') => {
    if (window.confirm(`${action === 'cancel' ? 'Cancel' : 'Retry'} job ${j.id}?`)) act.mutate(action);
  };
  return (
    <>
      <h1>
        {j.kind} <StateBadge state={j.state} />
      </h1>
      {writer && (
        <div className="actions">
          {!isFinished(j.state) && (
            <button type="button" onClick={() => confirmThen('cancel')} disabled={act.isPending}>
              Cancel
            </button>
          )}
          {isFinished(j.state) && (
            <button type="button" onClick={() => confirmThen('retry')} disabled={act.isPending}>
              Retry
            </button>
          )}
          <Link href={`/submit/?clone=${j.id}`}>Clone and edit</Link>
        </div>
      )}
      <ProblemView error={act.error} />
      <section className="panel">
        <dl className="fields">
          <dt>id</dt>
          <dd>
            <code>{j.id}</code>
          </dd>
          <dt>queue</dt>
          <dd>{j.queue}</dd>
          <dt>attempts</dt>
          <dd>
            {j.attempts} of {j.max_attempts}
          </dd>
          <dt>priority</dt>
          <dd>{j.priority}</dd>
          <dt>created</dt>
          <dd title={j.created_at}>{age(j.created_at)}</dd>
          <dt>run at</dt>
          <dd title={j.run_at}>{age(j.run_at)}</dd>
          <dt>started</dt>
          <dd title={j.started_at ?? ''}>{age(j.started_at)}</dd>
          <dt>finished</dt>
          <dd title={j.finished_at ?? ''}>{age(j.finished_at)}</dd>
          <dt>worker</dt>
          <dd>{j.worker_id ?? '—'}</dd>
          {j.last_error && (
            <>
              <dt>last error</dt>
              <dd className="state-dead">{j.last_error}</dd>
            </>
          )}
        </dl>
      </section>
      <section className="panel" aria-label="Payload">
        <h2>Payload</h2>
        <pre className="json">{JSON.stringify(j.payload, null, 2)}</pre>
        {j.result != null && (
          <>
            <h2>Result</h2>
            <pre className="json" data-testid="result">
              {JSON.stringify(j.result, null, 2)}
            </pre>
          </>
        )}
      </section>
      {j.errors.length > 0 && (
        <section className="panel" aria-label="Failed attempts">
          <h2>Failed attempts</h2>
          <table>
            <thead>
              <tr>
                <th className="num">attempt</th>
                <th>worker</th>
                <th>finished</th>
                <th>error</th>
              </tr>
            </thead>
            <tbody>
              {j.errors.map((e) => (
                <tr key={e.attempt}>
                  <td className="num">{e.attempt}</td>
                  <td>{e.worker_id ?? '—'}</td>
                  <td title={e.finished_at}>{age(e.finished_at)}</td>
                  <td>{e.error}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </>
  );
}

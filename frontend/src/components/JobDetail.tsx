'use client';
import Link from 'next/link';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, call, type Schemas } from '@/lib/api';
import { age, isFinished } from '@/lib/format';
import { usePoll } from '@/lib/live';
import { can, useMe } from '@/lib/me';
import { DataTable, type Column } from './DataTable';
import { ProblemView } from './ProblemView';
import { StateBadge } from './StateBadge';

type Attempt = Schemas['AttemptRun'];

const ATTEMPT_COLUMNS: Column<Attempt>[] = [
  { header: 'attempt', num: true, cell: (a) => a.attempt },
  {
    header: 'outcome',
    cell: (a) => <StateBadge state={a.outcome === 'failed' ? 'dead' : a.outcome} label={a.outcome} />,
  },
  { header: 'worker', cell: (a) => a.worker_id ?? '—' },
  { header: 'started', cell: (a) => age(a.started_at), title: (a) => a.started_at ?? '' },
  { header: 'finished', cell: (a) => age(a.finished_at), title: (a) => a.finished_at ?? '' },
  { header: 'duration', num: true, cell: (a) => (a.duration_ms == null ? '—' : `${a.duration_ms} ms`) },
  { header: 'error', cell: (a) => a.error ?? '' },
  {
    header: 'detail',
    cell: (a) =>
      a.detail == null ? (
        ''
      ) : (
        <code className="detail" title={JSON.stringify(a.detail, null, 2)}>
          {JSON.stringify(a.detail).slice(0, 120)}
        </code>
      ),
  },
];

/** One job: its fields, payload, result and every attempt; cancel, retry, clone. */
export function JobDetail({ id }: { id: string }) {
  const client = useQueryClient();
  const writer = can(useMe().data, 'jobs:write');
  const poll = usePoll(5000);
  const job = useQuery({
    queryKey: ['job', id],
    queryFn: () => call(() => api.GET('/v1/jobs/{id}', { params: { path: { id } } })),
    // Followed until it finishes (live updates arrive with the events stream).
    refetchInterval: (q) => (q.state.data && isFinished(q.state.data.state) ? false : poll),
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
      <section className="panel" aria-label="Attempts">
        <h2>Attempts</h2>
        <DataTable
          columns={ATTEMPT_COLUMNS}
          rows={j.history}
          rowKey={(a) => String(a.attempt)}
          noun="attempts"
          empty="Not started yet."
        />
      </section>
    </>
  );
}

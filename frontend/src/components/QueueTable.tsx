'use client';
import Link from 'next/link';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { api, call, type Queue, type Schemas } from '@/lib/api';
import { age, STATES } from '@/lib/format';
import { isOperator, useMe } from '@/lib/me';
import { DataTable, type Column } from './DataTable';
import { ProblemView } from './ProblemView';

const jobsOf = (queue: string, state?: string) =>
  `/jobs/?queue=${encodeURIComponent(queue)}${state ? `&state=${state}` : ''}`;

const COLUMNS: Column<Queue>[] = [
  {
    header: 'queue',
    cell: (q) => (
      <>
        <Link href={jobsOf(q.name)}>{q.name}</Link>{' '}
        {q.paused && (
          <span className="badge state-cancelled" title={`paused ${age(q.paused_at)}`}>
            paused
          </span>
        )}
      </>
    ),
  },
  ...STATES.map((s): Column<Queue> => ({
    header: s,
    num: true,
    cell: (q) =>
      (q.counts[s] ?? 0) > 0 ? <Link href={jobsOf(q.name, s)}>{q.counts[s]}</Link> : <span className="muted">0</span>,
  })),
  {
    header: 'oldest queued',
    num: true,
    cell: (q) => (q.oldest_queued_age_seconds > 0 ? `${Math.round(q.oldest_queued_age_seconds)} s` : '—'),
  },
  {
    header: 'consumed',
    cell: (q) => (q.last_consumed_at ? age(q.last_consumed_at) : <span className="muted">no worker yet</span>),
  },
];

function PauseButton({ q, onToggle }: { q: Queue; onToggle: (q: Queue) => void }) {
  const verb = q.paused ? 'Resume' : 'Pause';
  const confirmText = q.paused
    ? `Resume ${q.name}? Workers start claiming its jobs again.`
    : `Pause ${q.name}? No worker claims its jobs (any tenant's) until it is resumed.`;
  return (
    <button type="button" aria-label={`${verb} ${q.name}`} onClick={() => window.confirm(confirmText) && onToggle(q)}>
      {verb}
    </button>
  );
}

type Rate = Schemas['QueueRate'];

const percent = (r: number | null | undefined) => (r == null ? '—' : `${(r * 100).toFixed(r < 0.1 ? 1 : 0)} %`);

/** The throughput columns, from the statistics' per-queue rates. */
function rateColumns(rates: Rate[] | undefined): Column<Queue>[] {
  const of = (q: Queue) => rates?.find((r) => r.queue === q.name);
  return [
    {
      header: 'done / min',
      num: true,
      cell: (q) => {
        const r = of(q);
        return r ? (r.succeeded_per_minute + r.failed_per_minute).toFixed(1) : '—';
      },
    },
    { header: 'failure rate', num: true, cell: (q) => percent(of(q)?.failure_rate) },
  ];
}

/** Every queue: depth by state, throughput, failure rate, oldest queued job, consumers; the
 * operator pauses and resumes. */
export function QueueTable({ queues, rates }: { queues: Queue[] | undefined; rates?: Rate[] }) {
  const client = useQueryClient();
  const operator = isOperator(useMe().data);
  const toggle = useMutation({
    mutationFn: (q: Queue) => {
      const params = { params: { path: { name: q.name } } };
      return call(() =>
        q.paused ? api.POST('/v1/queues/{name}/resume', params) : api.POST('/v1/queues/{name}/pause', params),
      );
    },
    onSettled: () => client.invalidateQueries({ queryKey: ['queues'] }),
  });
  const actions: Column<Queue> = {
    header: '',
    className: 'actions',
    cell: (q) => <PauseButton q={q} onToggle={toggle.mutate} />,
  };
  return (
    <>
      <ProblemView error={toggle.error} />
      <DataTable
        columns={[...COLUMNS, ...rateColumns(rates), ...(operator ? [actions] : [])]}
        rows={queues}
        rowKey={(q) => q.name}
        noun="queues"
        empty="No queues yet: submit a job and its queue appears here."
      />
    </>
  );
}

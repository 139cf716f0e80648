'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call, type Schemas } from '@/lib/api';
import { age } from '@/lib/format';
import { DataTable, type Column } from '@/components/DataTable';
import { ProblemView } from '@/components/ProblemView';

type Worker = Schemas['WorkerView'];

const COLUMNS: Column<Worker>[] = [
  { header: 'worker', cell: (w) => w.id, title: (w) => `pid ${w.pid} on ${w.host}` },
  {
    header: 'status',
    cell: (w) => <span className={`badge ${w.status === 'live' ? 'state-succeeded' : 'state-dead'}`}>{w.status}</span>,
  },
  { header: 'queues', cell: (w) => w.queues.join(', ') },
  { header: 'busy', num: true, cell: (w) => `${w.busy}/${w.concurrency}` },
  { header: 'started', cell: (w) => age(w.started_at) },
  { header: 'last heard', cell: (w) => age(w.last_seen) },
  { header: 'version', cell: (w) => w.version },
];

/** Worker processes as their heartbeats report them; a silent one shows as lost, then goes. */
export default function Workers() {
  const list = useQuery({
    queryKey: ['workers'],
    queryFn: () => call(() => api.GET('/v1/workers')),
    refetchInterval: 5000,
  });
  return (
    <>
      <h1>Workers</h1>
      <ProblemView error={list.error} />
      <section className="panel">
        <DataTable
          columns={COLUMNS}
          rows={list.data?.workers}
          failed={!!list.error}
          rowKey={(w) => w.id}
          noun="workers"
          empty={
            <>
              No worker is running: start one with <code>pysaas worker</code>.
            </>
          }
        />
      </section>
    </>
  );
}

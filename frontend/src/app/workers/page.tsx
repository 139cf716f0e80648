'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import { age } from '@/lib/format';
import { ProblemView } from '@/components/ProblemView';

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
        {list.isPending ? (
          <p className="empty">Loading workers…</p>
        ) : list.data?.workers.length === 0 ? (
          <p className="empty">
            No worker is running: start one with <code>pysaas worker</code>.
          </p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>worker</th>
                <th>status</th>
                <th>queues</th>
                <th className="num">busy</th>
                <th>started</th>
                <th>last heard</th>
                <th>version</th>
              </tr>
            </thead>
            <tbody>
              {list.data?.workers.map((w) => (
                <tr key={w.id}>
                  <td title={`pid ${w.pid} on ${w.host}`}>{w.id}</td>
                  <td>
                    <span className={`badge ${w.status === 'live' ? 'state-succeeded' : 'state-dead'}`}>
                      {w.status}
                    </span>
                  </td>
                  <td>{w.queues.join(', ')}</td>
                  <td className="num">
                    {w.busy}/{w.concurrency}
                  </td>
                  <td>{age(w.started_at)}</td>
                  <td>{age(w.last_seen)}</td>
                  <td>{w.version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}

import Link from 'next/link';
import type { Job } from '@/lib/api';
import { age } from '@/lib/format';
import { StateBadge } from './StateBadge';

export function JobTable({ jobs }: { jobs: Job[] }) {
  if (jobs.length === 0) return <p className="empty">No jobs match these filters.</p>;
  return (
    <table>
      <thead>
        <tr>
          <th>id</th>
          <th>kind</th>
          <th>queue</th>
          <th>state</th>
          <th className="num">attempts</th>
          <th>created</th>
        </tr>
      </thead>
      <tbody>
        {jobs.map((j) => (
          <tr key={j.id}>
            <td>
              <Link href={`/jobs/?id=${j.id}`}>
                <code>{j.id.slice(0, 13)}…</code>
              </Link>
            </td>
            <td>{j.kind}</td>
            <td>{j.queue}</td>
            <td>
              <StateBadge state={j.state} />
            </td>
            <td className="num">
              {j.attempts}/{j.max_attempts}
            </td>
            <td>{age(j.created_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

'use client';
import Link from 'next/link';
import type { Queue } from '@/lib/api';
import { age, STATES } from '@/lib/format';

export function QueueTable({ queues }: { queues: Queue[] }) {
  if (queues.length === 0) return <p className="empty">No queues yet: submit a job and its queue appears here.</p>;
  return (
    <table>
      <thead>
        <tr>
          <th>queue</th>
          {STATES.map((s) => (
            <th key={s} className="num">
              {s}
            </th>
          ))}
          <th className="num">oldest queued</th>
          <th>consumed</th>
        </tr>
      </thead>
      <tbody>
        {queues.map((q) => (
          <tr key={q.name}>
            <td>
              <Link href={`/jobs/?queue=${encodeURIComponent(q.name)}`}>{q.name}</Link>
            </td>
            {STATES.map((s) => (
              <td key={s} className="num">
                {(q.counts[s] ?? 0) > 0 ? (
                  <Link href={`/jobs/?queue=${encodeURIComponent(q.name)}&state=${s}`}>{q.counts[s]}</Link>
                ) : (
                  <span className="muted">0</span>
                )}
              </td>
            ))}
            <td className="num">
              {q.oldest_queued_age_seconds > 0 ? `${Math.round(q.oldest_queued_age_seconds)} s` : '—'}
            </td>
            <td>{q.last_consumed_at ? age(q.last_consumed_at) : <span className="muted">no worker yet</span>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

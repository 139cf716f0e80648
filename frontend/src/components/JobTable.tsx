import Link from 'next/link';
import type { Job } from '@/lib/api';
import { age } from '@/lib/format';
import { DataTable, type Column } from './DataTable';
import { StateBadge } from './StateBadge';

const COLUMNS: Column<Job>[] = [
  {
    header: 'id',
    cell: (j) => (
      <Link href={`/jobs/?id=${j.id}`}>
        <code>{j.id.slice(0, 13)}…</code>
      </Link>
    ),
  },
  { header: 'kind', cell: (j) => j.kind },
  { header: 'queue', cell: (j) => j.queue },
  { header: 'state', cell: (j) => <StateBadge state={j.state} /> },
  { header: 'attempts', num: true, cell: (j) => `${j.attempts}/${j.max_attempts}` },
  { header: 'created', cell: (j) => age(j.created_at) },
];

/** Jobs as a table; with `selection`, each row has a checkbox (for bulk actions on the rows). */
export function JobTable({
  jobs,
  selection,
  failed,
}: {
  jobs: Job[] | undefined;
  failed?: boolean;
  selection?: { selected: ReadonlySet<string>; toggle: (id: string) => void };
}) {
  const select: Column<Job> | null = selection
    ? {
        header: '',
        cell: (j) => (
          <input
            type="checkbox"
            aria-label={`Select job ${j.id}`}
            checked={selection.selected.has(j.id)}
            onChange={() => selection.toggle(j.id)}
          />
        ),
      }
    : null;
  return (
    <DataTable
      columns={select ? [select, ...COLUMNS] : COLUMNS}
      rows={jobs}
      rowKey={(j) => j.id}
      noun="jobs"
      empty="No jobs match these filters."
      failed={failed}
    />
  );
}

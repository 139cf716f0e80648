'use client';
import Link from 'next/link';
import { useRouter } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import { useQuery } from '@tanstack/react-query';
import { api, call, type Schemas } from '@/lib/api';
import { age } from '@/lib/format';
import { DataTable, type Column } from './DataTable';
import { Field } from './Field';
import { ProblemView } from './ProblemView';

type Entry = Schemas['AuditEntryView'];

/** The audit log's filters, as the URL holds them. */
export interface AuditFilters {
  subject?: string;
  type?: string;
  /** Entries before this time: the page after the one that ended there. */
  to?: string;
  /** With `to`: the id of the entry that page ended with (entries sharing its time come too). */
  before?: string;
}

export function auditSearch(f: AuditFilters): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) params.set(k, v);
  return params.toString();
}

/** A job transition's "from → to", or the type itself. */
function what(e: Entry): string {
  const data = e.data as { from?: string | null; state?: string } | null;
  if (e.type.startsWith('pysaas.job.') && data?.state) return `${data.from ?? 'new'} → ${data.state}`;
  return e.type;
}

/** The subject, as a link when it is a job. */
function subject(e: Entry) {
  const job = /^jobs\/(.+)$/.exec(e.subject);
  return job ? <Link href={`/jobs/?id=${job[1]}`}>{e.subject}</Link> : e.subject;
}

const COLUMNS: Column<Entry>[] = [
  { header: 'time', cell: (e) => age(e.time), title: (e) => e.time },
  { header: 'type', cell: (e) => <code>{e.type}</code> },
  { header: 'subject', cell: subject },
  { header: 'what', cell: what },
  {
    header: 'by',
    cell: (e) => (e.data as { worker_id?: string | null } | null)?.worker_id ?? '',
  },
];

const PAGE = 50;

function Filters({ filters }: { filters: AuditFilters }) {
  const router = useRouter();
  const [draft, setDraft] = useState(filters);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    router.push(`/audit/?${auditSearch({ ...draft, to: undefined, before: undefined })}`);
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="Audit filters">
      <Field
        label="subject"
        value={draft.subject ?? ''}
        onChange={(subject) => setDraft({ ...draft, subject })}
        placeholder="jobs/…"
      />
      <Field
        label="type"
        value={draft.type ?? ''}
        onChange={(type) => setDraft({ ...draft, type })}
        placeholder="pysaas.job.dead"
      />
      <button type="submit">Filter</button>
    </form>
  );
}

/** The tenant's audit log, newest first, filtered by subject and type, a page at a time. */
export function AuditLog({ filters }: { filters: AuditFilters }) {
  const list = useQuery({
    queryKey: ['audit', filters],
    queryFn: () =>
      call(() =>
        api.GET('/v1/audit', {
          params: {
            query: {
              subject: filters.subject || undefined,
              type: filters.type || undefined,
              to: filters.to || undefined,
              before: filters.to ? filters.before || undefined : undefined,
              limit: PAGE,
            },
          },
        }),
      ),
    refetchInterval: filters.to ? false : 5000,
  });
  const entries = list.data?.entries;
  const last = entries && entries.length === PAGE ? entries[entries.length - 1] : undefined;
  return (
    <>
      <h1>Audit log</h1>
      <Filters filters={filters} />
      <ProblemView error={list.error} />
      <section className="panel">
        <DataTable
          columns={COLUMNS}
          rows={entries}
          failed={!!list.error}
          rowKey={(e) => e.id}
          noun="audit entries"
          empty={
            <>
              Nothing recorded here: the audit log fills when <code>events.enabled</code> is on.
            </>
          }
        />
        {last && (
          <Link href={`/audit/?${auditSearch({ ...filters, to: last.time, before: last.id })}`}>Older entries</Link>
        )}
      </section>
    </>
  );
}

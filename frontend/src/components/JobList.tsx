'use client';
import Link from 'next/link';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api, call } from '@/lib/api';
import { payloadObject, searchOf, type JobFilters } from '@/lib/filters';
import { usePoll } from '@/lib/live';
import { can, useMe } from '@/lib/me';
import { BulkBar } from './BulkBar';
import { JobFiltersForm } from './JobFiltersForm';
import { JobTable } from './JobTable';
import { ProblemView } from './ProblemView';

/** A page of jobs, newest first, with keyset paging. */
export function JobList({ filters }: { filters: JobFilters }) {
  const poll = usePoll(5000);
  const page = useQuery({
    queryKey: ['jobs', filters],
    queryFn: () => call(() => api.GET('/v1/jobs', { params: { query: { ...filters, limit: 50 } } })),
    refetchInterval: poll,
  });
  const next = page.data?.next_cursor;
  const writer = can(useMe().data, 'jobs:write');
  // Bulk actions apply to the first page's filters (a payload search included, when valid).
  const bulkable = !filters.cursor && (!filters.payload || payloadObject(filters.payload) !== null);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const toggle = (id: string) =>
    setSelected((before) => {
      const now = new Set(before);
      if (!now.delete(id)) now.add(id);
      return now;
    });
  return (
    <>
      <h1>{filters.state === 'dead' ? 'Dead jobs' : 'Jobs'}</h1>
      <JobFiltersForm key={searchOf(filters)} filters={filters} />
      {page.data && bulkable && (
        <BulkBar
          filters={filters}
          shown={page.data.jobs.length}
          complete={!next}
          selected={[...selected]}
          onDone={() => setSelected(new Set())}
        />
      )}
      <section className="panel">
        <ProblemView error={page.error} />
        <JobTable
          jobs={page.data?.jobs}
          failed={!!page.error}
          selection={writer && bulkable ? { selected, toggle } : undefined}
        />
      </section>
      <div className="actions">
        {filters.cursor && <Link href={`/jobs/?${searchOf({ ...filters, cursor: undefined })}`}>First page</Link>}
        {next && <Link href={`/jobs/?${searchOf({ ...filters, cursor: next })}`}>Older jobs →</Link>}
      </div>
    </>
  );
}

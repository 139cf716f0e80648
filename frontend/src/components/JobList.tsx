'use client';
import Link from 'next/link';
import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api, call } from '@/lib/api';
import { searchOf, type JobFilters } from '@/lib/filters';
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
    // A payload search scans (no index): run it when asked, not every two seconds.
    refetchInterval: filters.payload ? false : poll,
    meta: { live: !filters.payload },
  });
  const next = page.data?.next_cursor;
  const writer = can(useMe().data, 'jobs:write');
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
      {page.data && !filters.cursor && !filters.payload && (
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
          selection={writer && !filters.cursor && !filters.payload ? { selected, toggle } : undefined}
        />
      </section>
      <div className="actions">
        {filters.cursor && <Link href={`/jobs/?${searchOf({ ...filters, cursor: undefined })}`}>First page</Link>}
        {next && <Link href={`/jobs/?${searchOf({ ...filters, cursor: next })}`}>Older jobs →</Link>}
      </div>
    </>
  );
}

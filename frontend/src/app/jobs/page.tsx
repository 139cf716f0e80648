'use client';
import { useSearchParams } from 'next/navigation';
import { Suspense } from 'react';
import { filtersFrom } from '@/lib/filters';
import { JobDetail } from '@/components/JobDetail';
import { JobList } from '@/components/JobList';

function Jobs() {
  const search = useSearchParams();
  const id = search.get('id');
  return id ? <JobDetail id={id} /> : <JobList key={search.toString()} filters={filtersFrom(search)} />;
}

export default function JobsPage() {
  return (
    <Suspense fallback={<p className="empty">Loading…</p>}>
      <Jobs />
    </Suspense>
  );
}

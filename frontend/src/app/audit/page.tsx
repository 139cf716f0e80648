'use client';
import { useSearchParams } from 'next/navigation';
import { Suspense } from 'react';
import { AuditLog } from '@/components/AuditLog';

function Audit() {
  const search = useSearchParams();
  const filters = {
    subject: search.get('subject') ?? undefined,
    type: search.get('type') ?? undefined,
    to: search.get('to') ?? undefined,
    before: search.get('before') ?? undefined,
  };
  return <AuditLog key={search.toString()} filters={filters} />;
}

export default function AuditPage() {
  return (
    <Suspense fallback={<p className="empty">Loading…</p>}>
      <Audit />
    </Suspense>
  );
}

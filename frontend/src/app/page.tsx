'use client';
import { useQuery } from '@tanstack/react-query';
import { api, call } from '@/lib/api';
import { usePoll } from '@/lib/live';
import { QueueTable } from '@/components/QueueTable';
import { ProblemView } from '@/components/ProblemView';
import { StatsCharts, useStats } from '@/components/StatsCharts';
import { AnalyticsCharts } from '@/components/AnalyticsCharts';

export default function Overview() {
  const queues = useQuery({
    queryKey: ['queues'],
    queryFn: () => call(() => api.GET('/v1/queues')),
    refetchInterval: usePoll(5000),
  });
  const rates = useStats('hour').data?.queues;
  return (
    <>
      <h1>Overview</h1>
      <StatsCharts />
      <AnalyticsCharts />
      <section className="panel" aria-label="Queues">
        <ProblemView error={queues.error} />
        <QueueTable queues={queues.data?.queues} rates={rates} />
      </section>
    </>
  );
}

'use client';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { useState, type ReactNode } from 'react';
import { Problem } from '@/lib/api';
import { LiveContext, useLiveStream } from '@/lib/live';

/** Provides whether live updates flow (inside the query client, whose queries it refreshes). */
function Live({ children }: { children: ReactNode }) {
  return <LiveContext.Provider value={useLiveStream()}>{children}</LiveContext.Provider>;
}

export function Providers({ children }: { children: ReactNode }) {
  const [client] = useState(
    () =>
      new QueryClient({
        defaultOptions: {
          queries: {
            // A problem the server stated (4xx) is shown, not retried.
            retry: (failures, error) => !(error instanceof Problem && error.status < 500) && failures < 2,
            refetchOnWindowFocus: true,
          },
        },
      }),
  );
  return (
    <QueryClientProvider client={client}>
      <Live>{children}</Live>
    </QueryClientProvider>
  );
}

'use client';
// Live updates: one Server-Sent Events stream per tab (`GET /v1/events/stream`) tells the
// dashboard that the tenant's jobs changed, in whichever process; the queries showing jobs and
// queues are then refetched. While the stream is up nothing polls; while it is down (or before
// it opens) pages fall back to polling. A hidden tab closes the stream and reopens it (and
// refetches) when shown again.
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useState } from 'react';
import { credential, refreshSession } from './session';

/** The query keys (first parts) whose data follows jobs' states. A query with `meta: { live:
 * false }` is left alone (an expensive search runs when asked, not on every change). */
const LIVE_KEYS: readonly unknown[] = ['jobs', 'job', 'queues'];
/** Pause before reconnecting a failed stream. */
const RETRY_MS = 3000;
/** Refetches at most this often however many changes come (a busy tenant's come 10 a second;
 * another SQLite process's, untold which tenant, as often). */
const REFRESH_EVERY_MS = 500;
/** Polling while live: a safety net for a change notice lost on the way. */
const LIVE_POLL_MS = 30_000;

/** The stream was refused (401/403): reconnecting would not help. */
class Refused extends Error {}

export const LiveContext = createContext(false);

/** Whether live updates are flowing. */
export function useLive(): boolean {
  return useContext(LiveContext);
}

/** A query's polling interval: a slow safety net while live updates flow, `ms` otherwise. */
export function usePoll(ms: number): number {
  return useLive() ? LIVE_POLL_MS : ms;
}

/** A fetch that sends the credential and, on a 401 with a session, refreshes it once. */
async function authorized(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const attempt = (token: string | null) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const sent = credential();
  const response = await attempt(sent);
  if (response.status === 401 && (await refreshSession(sent))) return attempt(credential());
  return response;
}

/** Keeps this tab's event stream open while signed in; returns whether it is up. */
export function useLiveStream(): boolean {
  const client = useQueryClient();
  const [live, setLive] = useState(false);
  useEffect(() => {
    if (credential() === null) return;
    const abort = new AbortController();
    const invalidate = () =>
      void client.invalidateQueries(
        { predicate: (q) => LIVE_KEYS.includes(q.queryKey[0]) && q.meta?.live !== false },
        // A refetch under way is let finish: a slow list must not be restarted forever.
        { cancelRefetch: false },
      );
    // The first change refetches at once; more within a second make one refetch after it.
    let last = 0;
    let trailing: ReturnType<typeof setTimeout> | null = null;
    const refresh = () => {
      const wait = last + REFRESH_EVERY_MS - Date.now();
      if (wait <= 0) {
        last = Date.now();
        invalidate();
      } else
        trailing ??= setTimeout(() => {
          trailing = null;
          last = Date.now();
          invalidate();
        }, wait);
    };
    void fetchEventSource('/v1/events/stream', {
      signal: abort.signal,
      openWhenHidden: false,
      fetch: authorized,
      onopen: async (response) => {
        if (response.status === 401 || response.status === 403)
          throw new Refused(`event stream refused (${response.status})`);
        if (!response.ok) throw new Error(`event stream unavailable (${response.status})`);
      },
      onmessage: (message) => {
        if (message.event === 'ready') setLive(true);
        // After (re)connecting, changes may have been missed: refetch as after a change.
        if (message.event === 'ready' || message.event === 'changed') refresh();
      },
      onclose: () => {
        setLive(false);
        throw new Error('event stream closed');
      },
      onerror: (error: unknown) => {
        setLive(false);
        // Refused: the pages poll (and show the problem) instead.
        if (error instanceof Refused) throw error;
        return RETRY_MS;
      },
    }).catch(() => setLive(false));
    return () => {
      abort.abort();
      if (trailing) clearTimeout(trailing);
    };
  }, [client]);
  return live;
}

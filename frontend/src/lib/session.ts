// Who the dashboard acts as: an API key, or a session (access + refresh token) from a login.
// Kept in localStorage of this origin only.

const KEY = 'pysaas.credential';
const REFRESH = 'pysaas.refresh';

export function credential(): string | null {
  return typeof window === 'undefined' ? null : window.localStorage.getItem(KEY);
}

export function signIn(token: string, refresh?: string): void {
  window.localStorage.setItem(KEY, token);
  if (refresh) window.localStorage.setItem(REFRESH, refresh);
  else window.localStorage.removeItem(REFRESH);
}

/** The session's refresh token (none when signed in with an API key). */
export function refreshToken(): string | null {
  return typeof window === 'undefined' ? null : window.localStorage.getItem(REFRESH);
}

export function signOut(): void {
  window.localStorage.removeItem(KEY);
  window.localStorage.removeItem(REFRESH);
}

let refreshing: Promise<boolean> | null = null;

/**
 * Exchanges the refresh token for a new pair; `false` when there is none or it is refused. One
 * exchange at a time (a second use of a refresh token is taken as theft and revokes the whole
 * session), and not at all when another request already replaced the credential `failed`.
 */
export function refreshSession(failed: string | null): Promise<boolean> {
  if (credential() !== failed) return Promise.resolve(credential() !== null);
  refreshing ??= exchange().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Resolves once no refresh is under way (so that the refresh token is not spent twice). */
export async function refreshSettled(): Promise<void> {
  if (refreshing) await refreshing;
}

async function exchange(): Promise<boolean> {
  const refresh = window.localStorage.getItem(REFRESH);
  if (!refresh) return false;
  const response = await fetch('/v1/auth/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  if (response.status === 401) {
    // Refused (expired, revoked, or used already): the session is over.
    signOut();
    return false;
  }
  if (!response.ok) return false; // rate limited or unavailable: keep the session, try later
  const tokens = (await response.json()) as { access_token: string; refresh_token: string };
  signIn(tokens.access_token, tokens.refresh_token);
  return true;
}

/** Ends the session on the server too (its refresh token stops working), then here. */
export async function logOut(): Promise<void> {
  const refresh = window.localStorage.getItem(REFRESH);
  if (refresh) {
    await fetch('/v1/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: refresh }),
    }).catch(() => undefined);
  }
  signOut();
}

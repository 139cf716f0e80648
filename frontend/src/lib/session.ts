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

export function signOut(): void {
  window.localStorage.removeItem(KEY);
  window.localStorage.removeItem(REFRESH);
}

/** Exchanges the refresh token for a new pair; `false` when there is none or it is refused. */
export async function refreshSession(): Promise<boolean> {
  const refresh = window.localStorage.getItem(REFRESH);
  if (!refresh) return false;
  const response = await fetch('/v1/auth/refresh', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refresh_token: refresh }),
  });
  if (!response.ok) {
    signOut();
    return false;
  }
  const tokens = (await response.json()) as { access_token: string; refresh_token: string };
  signIn(tokens.access_token, tokens.refresh_token);
  return true;
}

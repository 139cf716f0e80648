// The jobs page's filters live in the URL (bookmarkable): `?state=dead&kind=…&queue=…&cursor=…`.
import { STATES, type State } from './format';

export interface JobFilters {
  state?: State;
  kind?: string;
  queue?: string;
  /** A JSON object the payload must contain, e.g. `{"user_id":42}`. */
  payload?: string;
  cursor?: string;
}

export function filtersFrom(search: URLSearchParams): JobFilters {
  const filters: JobFilters = {};
  const state = search.get('state');
  if (state && (STATES as readonly string[]).includes(state)) filters.state = state as State;
  for (const key of ['kind', 'queue', 'payload', 'cursor'] as const) {
    const value = search.get(key)?.trim();
    if (value) filters[key] = value;
  }
  return filters;
}

/** The query string of `filters` (without `?`), fields in a stable order, empty ones left out. */
export function searchOf(filters: JobFilters): string {
  const search = new URLSearchParams();
  for (const key of ['state', 'kind', 'queue', 'payload', 'cursor'] as const) {
    const value = filters[key];
    if (value) search.set(key, value);
  }
  return search.toString();
}

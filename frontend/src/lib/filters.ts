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

/** A payload member's value a search can match. */
export type Scalar = string | number | boolean | null;

/**
 * The payload search as the object a bulk action's filter takes; `null` when there is none or it
 * is not a JSON object of scalars this page can send unchanged (the list shows the server's 422
 * for a bad one; neither offers a bulk action).
 */
export function payloadObject(payload: string | undefined): Record<string, Scalar> | null {
  if (!payload) return null;
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const members = Object.entries(value as Record<string, unknown>);
  // An integer past 2^53 would be rounded by JSON.parse: the bulk action would act on another
  // value than the list searched for, so none is offered.
  const scalar = (v: unknown): v is Scalar =>
    v === null ||
    typeof v === 'string' ||
    typeof v === 'boolean' ||
    (typeof v === 'number' && (!Number.isInteger(v) || Number.isSafeInteger(v)));
  return members.every(([, v]) => scalar(v)) ? Object.fromEntries(members as [string, Scalar][]) : null;
}

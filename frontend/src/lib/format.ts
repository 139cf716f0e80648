/** "3 s", "4 min", "2 h", "5 d" ago (or ahead) from an RFC 3339 time. */
export function age(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '—';
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  const magnitude = Math.abs(seconds);
  const [value, unit] =
    magnitude < 60
      ? [magnitude, 's']
      : magnitude < 3600
        ? [Math.round(magnitude / 60), 'min']
        : magnitude < 86400
          ? [Math.round(magnitude / 3600), 'h']
          : [Math.round(magnitude / 86400), 'd'];
  return seconds >= 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

export const STATES = ['queued', 'scheduled', 'running', 'retrying', 'succeeded', 'dead', 'cancelled'] as const;
export type State = (typeof STATES)[number];

export function isFinished(state: string): boolean {
  return state === 'succeeded' || state === 'dead' || state === 'cancelled';
}

/** A state as a coloured badge; `label` when the words differ from the state's. */
export function StateBadge({ state, label }: { state: string; label?: string }) {
  return <span className={`badge state-${state}`}>{label ?? state}</span>;
}

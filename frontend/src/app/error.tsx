'use client';

/** Any page that fails while rendering shows this instead of an empty screen. */
export default function PageError({ error, reset }: { error: Error; reset: () => void }) {
  return (
    <div className="problem" role="alert">
      <p>This page failed: {error.message}</p>
      <button type="button" onClick={reset}>
        Try again
      </button>
    </div>
  );
}

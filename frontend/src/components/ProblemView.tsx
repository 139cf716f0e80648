import { Problem } from '@/lib/api';

/** A failed request, as the server explained it. */
export function ProblemView({ error }: { error: unknown }) {
  if (!error) return null;
  const problem = error instanceof Problem ? error : null;
  return (
    <div className="problem" role="alert">
      {problem ? problem.message : String(error)}
      {problem?.status === 401 && (
        <>
          {' '}
          — <a href="/login/">sign in</a>
        </>
      )}
      {problem && problem.fields.length > 0 && (
        <ul>
          {problem.fields.map((f) => (
            <li key={f.path}>
              <code>{f.path}</code>: {f.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

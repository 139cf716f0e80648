import { Fragment, type ReactNode } from 'react';

/** One column: its heading and how a row fills its cell. */
export interface Column<T> {
  header: string;
  cell: (row: T) => ReactNode;
  /** Right-aligned, tabular figures. */
  num?: boolean;
  /** A class for the row's cell (`actions`, say). */
  className?: string;
  title?: (row: T) => string;
}

interface Props<T> {
  columns: Column<T>[];
  /** `undefined` while the first answer is on its way. */
  rows: T[] | undefined;
  rowKey: (row: T) => string;
  /** What the table is of, for "Loading …". */
  noun: string;
  empty: ReactNode;
  /** A full-width row shown under a row (an editor, say), or nothing. */
  below?: (row: T) => ReactNode;
  /** The rows could not be loaded (the problem is shown beside): no endless "Loading". */
  failed?: boolean;
}

/** Every table of the dashboard: a designed loading and empty state, then the rows. */
export function DataTable<T>({ columns, rows, rowKey, noun, empty, below, failed }: Props<T>) {
  if (rows === undefined) return failed ? null : <p className="empty">Loading {noun}…</p>;
  if (rows.length === 0) return <p className="empty">{empty}</p>;
  return (
    <table>
      <thead>
        <tr>
          {columns.map((c, i) => (
            <th key={i} className={c.num ? 'num' : undefined}>
              {c.header}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => {
          const extra = below?.(row);
          return (
            <Fragment key={rowKey(row)}>
              <tr>
                {columns.map((c, i) => (
                  <td key={i} className={c.num ? 'num' : c.className} title={c.title?.(row)}>
                    {c.cell(row)}
                  </td>
                ))}
              </tr>
              {extra && (
                <tr>
                  <td colSpan={columns.length}>{extra}</td>
                </tr>
              )}
            </Fragment>
          );
        })}
      </tbody>
    </table>
  );
}

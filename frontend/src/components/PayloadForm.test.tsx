// @vitest-environment jsdom
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { act, cleanup, fireEvent, render } from '@testing-library/react';
import type { RJSFSchema } from '@rjsf/utils';
import { afterEach, describe, expect, it } from 'vitest';
import { PayloadForm } from './PayloadForm';

// The server's own document (written by `pysaas openapi` before the build): the form is tested
// on the schemas the server checks payloads against.
const doc = JSON.parse(readFileSync(resolve(__dirname, '../../openapi.json'), 'utf8')) as {
  components: { schemas: Record<string, RJSFSchema> };
};
const schemaOf = (kind: string): RJSFSchema => {
  const schema = doc.components.schemas[`Payload.${kind}`];
  if (!schema) throw new Error(`no schema for ${kind}`);
  return schema;
};

/** Renders the form for `kind` with `value`, types `typed` into `field`, and returns every
 * (payload, valid) the form reported, the last one last. */
function fill(kind: string, field: string, typed: string) {
  const seen: { payload: unknown; valid: boolean }[] = [];
  const view = render(
    <PayloadForm schema={schemaOf(kind)} value={{}} onChange={(payload, valid) => seen.push({ payload, valid })} />,
  );
  const input = view.container.querySelector<HTMLInputElement>(`#root_${field}`);
  if (!input) throw new Error(`no input for ${field}`);
  act(() => {
    fireEvent.change(input, { target: { value: typed } });
  });
  return { seen, view };
}

afterEach(cleanup);

describe('PayloadForm', () => {
  it('generates one input per payload field', () => {
    const view = render(<PayloadForm schema={schemaOf('notification.webhook')} value={{}} onChange={() => {}} />);
    expect(view.container.querySelector('#root_url')).not.toBeNull();
    expect(view.container.querySelector('#root_ms')).toBeNull();
  });

  it('accepts a valid payload', () => {
    const { seen } = fill('system.sleep', 'ms', '300');
    expect(seen.at(-1)).toEqual({ payload: { ms: 300 }, valid: true });
  });

  it('refuses what the server would refuse with a 422 (bounds), and says why', () => {
    const { seen, view } = fill('system.sleep', 'ms', '60000');
    expect(seen.at(-1)?.valid).toBe(false);
    expect(view.container.textContent).toMatch(/must be <= 59999/);
  });

  it('checks patterns as the server does', () => {
    expect(fill('notification.webhook', 'url', 'ftp://example.com').seen.at(-1)?.valid).toBe(false);
    cleanup();
    const ok = fill('notification.webhook', 'url', 'https://hooks.example.com/in');
    // The body is still missing: required fields are the server's too.
    expect(ok.seen.at(-1)?.valid).toBe(false);
    expect(ok.view.container.textContent).not.toMatch(/must match pattern/);
  });
});

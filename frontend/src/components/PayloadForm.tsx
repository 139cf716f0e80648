'use client';
import Form from '@rjsf/core';
import type { RJSFSchema } from '@rjsf/utils';
import { customizeValidator } from '@rjsf/validator-ajv8';
import Ajv2020 from 'ajv/dist/2020';

// schemars names integer widths as formats (`uint64`, …); their bounds are `minimum`/`maximum`,
// which Ajv checks, so the names only need to be known.
const WIDTHS = [
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'uint',
  'int',
  'float',
  'double',
];

// The kinds' schemas are JSON Schema 2020-12 (schemars); the form checks them as the server does.
const validator = customizeValidator({
  AjvClass: Ajv2020,
  customFormats: Object.fromEntries(WIDTHS.map((w) => [w, () => true])),
});

/** A form generated from a kind's payload schema, checked client-side before it is sent. */
export function PayloadForm({
  schema,
  value,
  onChange,
}: {
  schema: RJSFSchema;
  value: unknown;
  onChange: (payload: unknown, valid: boolean) => void;
}) {
  // Ajv would look up the meta-schema the `$schema` names; the validator above already is it.
  const plain: RJSFSchema = { ...schema };
  delete plain.$schema;
  return (
    <Form
      className="rjsf"
      schema={plain}
      formData={value}
      validator={validator}
      liveValidate
      showErrorList={false}
      onChange={(e) => onChange(e.formData, e.errors.length === 0)}
      uiSchema={{ 'ui:submitButtonOptions': { norender: true } }}
    />
  );
}

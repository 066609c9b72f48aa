'use strict';
// Validate an AsyncAPI document with the AsyncAPI initiative's own parser (@asyncapi/parser).
//
//   node validate-asyncapi.js ../../docs/asyncapi.yaml
//
// Prints one line per diagnostic ("error|warning|info|hint <path>: <message>"), then a JSON
// summary of what the parser read (channels, operations, messages), and exits 1 when the parser
// reports any error or warning: the contract other teams read must be clean, not merely loadable.

const fs = require('fs');
const { Parser } = require('@asyncapi/parser');

const SEVERITY = ['error', 'warning', 'info', 'hint'];

async function main(file) {
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'), { source: file });
  for (const d of diagnostics) {
    console.log(`${SEVERITY[d.severity]} ${d.path.join('.')}: ${d.message}`);
  }
  const serious = diagnostics.filter((d) => d.severity <= 1);
  if (!document || serious.length) {
    console.log(`${file}: ${serious.length} errors or warnings`);
    return 1;
  }
  const summary = {
    version: document.version(),
    channels: document.channels().all().map((c) => c.id()),
    operations: document.operations().all().map((o) => o.id()),
    messages: document.components().messages().all().map((m) => m.id()),
  };
  console.log(JSON.stringify(summary));
  return 0;
}

main(process.argv[2]).then((code) => process.exit(code), (err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});

// gpt2_reference_ids.js — encodes a UTF-8 text file with two independent JavaScript GPT-2
// encoders (npm gpt-3-encoder, a port of OpenAI's encoder.py, and gpt-tokenizer's r50k_base, a
// port of tiktoken), checks that they agree, and prints the ids as a JSON array.
//
//   node gpt2_reference_ids.js GPT3_ENCODER_DIR GPT_TOKENIZER_DIR CORPUS > ids.json
// The directories are unpacked npm packages (see fetch_gpt2_reference.sh).
'use strict';
const fs = require('fs');
const path = require('path');

const [encDir, gtDir, corpus] = process.argv.slice(2);
if (!corpus) {
  console.error('usage: node gpt2_reference_ids.js GPT3_ENCODER_DIR GPT_TOKENIZER_DIR CORPUS');
  process.exit(2);
}
const text = fs.readFileSync(corpus, 'utf-8');
const a = require(path.resolve(encDir, 'Encoder.js')).encode(text);
const b = require(path.resolve(gtDir, 'cjs/encoding/r50k_base.js')).encode(text);
const n = Math.max(a.length, b.length);
for (let i = 0; i < n; ++i) {
  if (a[i] !== b[i]) {
    console.error(`reference encoders disagree at token ${i}: gpt-3-encoder ${a[i]}, gpt-tokenizer ${b[i]}`);
    process.exit(1);
  }
}
process.stdout.write(JSON.stringify(a) + '\n');

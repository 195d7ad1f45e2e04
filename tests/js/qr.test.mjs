// The admin page's QR encoder: Reed-Solomon against the standard's worked example, and every
// version it makes read back by an independent decoder (jsQR).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import jsQR from 'jsqr';
import { qrMatrix, qrPath, reedSolomon } from '../../static/qr.js';

/** Draws the modules at 4 px each with a 4-module quiet zone and decodes them. */
function decode(matrix) {
  const scale = 4;
  const quiet = 4;
  const n = (matrix.length + 2 * quiet) * scale;
  const pixels = new Uint8ClampedArray(n * n * 4).fill(255);
  matrix.forEach((row, y) =>
    row.forEach((on, x) => {
      if (!on) return;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const p = (((y + quiet) * scale + dy) * n + (x + quiet) * scale + dx) * 4;
          pixels[p] = pixels[p + 1] = pixels[p + 2] = 0;
        }
      }
    }),
  );
  return jsQR(pixels, n, n);
}

test('error correction codewords match the worked example (HELLO WORLD, 1-M)', () => {
  const data = [32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17, 236, 17, 236, 17];
  assert.deepEqual(reedSolomon(data, 10), [196, 35, 39, 119, 235, 215, 231, 226, 93, 23]);
});

test('links of every length up to 213 bytes read back exactly, versions 1 to 10', () => {
  const sizes = new Set();
  for (let length = 1; length <= 213; length += 4) {
    const text = `https://auth.example.com/?recover=lke_${'aZ9_-'.repeat(50)}`.slice(0, length);
    const matrix = qrMatrix(text);
    sizes.add(matrix.length);
    const read = decode(matrix);
    assert.equal(read?.data, text, `length ${length}`);
    assert.equal(read.version, (matrix.length - 17) / 4);
  }
  assert.deepEqual([...sizes].sort((a, b) => a - b), [21, 25, 29, 33, 37, 41, 45, 49, 53, 57]);
});

test('non-ASCII text is encoded as UTF-8, and too long a text is refused', () => {
  assert.equal(decode(qrMatrix('/?recover=é✓'))?.data, '/?recover=é✓');
  assert.throws(() => qrMatrix('x'.repeat(214)), RangeError);
});

test('the SVG path has one square per dark module inside a quiet zone', () => {
  const matrix = qrMatrix('hi');
  const { d, size } = qrPath(matrix);
  assert.equal(size, 21 + 8);
  const dark = matrix.flat().filter(Boolean).length;
  assert.equal(d.match(/M/g).length, dark);
  assert.match(d, /^M4 4h1v1h-1z/, 'the finder pattern starts after the quiet zone');
});

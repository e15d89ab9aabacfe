/* MD5, for the Content-MD5 header DeleteObjects requires: crypto.subtle has no MD5, and
 * no subtle at all over plain http. RFC 1321, over a Uint8Array; returns the raw digest. */
const K = Array.from({length: 64}, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
const R = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
export function md5(data) {
  const n = data.length, words = (((n + 8) >> 6) + 1) << 4, w = new Uint32Array(words);
  for (let i = 0; i < n; i++) w[i >> 2] |= data[i] << ((i & 3) * 8);
  w[n >> 2] |= 0x80 << ((n & 3) * 8);
  w[words - 2] = (n * 8) >>> 0;
  w[words - 1] = Math.floor(n / 0x20000000);
  const st = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
  for (let o = 0; o < words; o += 16) {
    let [a, b, c, d] = st;
    for (let i = 0; i < 64; i++) {
      const r = i >> 4;
      const f = r === 0 ? (b & c) | (~b & d) : r === 1 ? (d & b) | (~d & c)
        : r === 2 ? b ^ c ^ d : c ^ (b | ~d);
      const g = r === 0 ? i : r === 1 ? (5 * i + 1) & 15 : r === 2 ? (3 * i + 5) & 15 : (7 * i) & 15;
      const x = (a + f + K[i] + w[o + g]) | 0, s = R[(r << 2) | (i & 3)];
      a = d; d = c; c = b;
      b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
    }
    st[0] = (st[0] + a) | 0; st[1] = (st[1] + b) | 0; st[2] = (st[2] + c) | 0; st[3] = (st[3] + d) | 0;
  }
  const out = new Uint8Array(16), view = new DataView(out.buffer);
  st.forEach((v, i) => view.setUint32(i * 4, v, true));
  return out;
}
export const b64 = (u8) => btoa(String.fromCharCode(...u8));

// The book's preprocessing, in JavaScript, for drawings made in the page "Draw a digit".
//
// A drawing is already what preprocess_photo works towards: white ink on black, no paper to
// remove. What is left are the last steps, hwr_utils.preprocess.mnist_convention for one digit
// (crop to the ink, scale its longer side to 20 pixels, centre by mass in 28x28) and the end of
// preprocess_number_photo for a whole number (crop, scale to the strip's ink height, pad).
// Each step follows the OpenCV call the Python code makes, so that the two agree to within a
// grey level; tests/test_browser.py checks that on traced MNIST digits.

export const BOX = 20; // the digit's longer side, in pixels (MNIST)
export const FIELD = 28; // the image the digit model reads
export const STRIP_HEIGHT = 32; // the number reader's strips
export const STRIP_WIDTH = 192; // ... are at least this wide (what training strips were)
export const BLANK = 10; // the CTC blank: the reader's last output unit

// Python's round(): halves go to the even neighbour (sizes must match numpy's to the pixel).
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// The red channel of an RGBA ImageData: the ink of a white-on-black drawing, as floats.
export function inkPlane(imageData) {
  const { data, width, height } = imageData;
  const plane = new Float64Array(width * height);
  for (let i = 0; i < plane.length; i++) plane[i] = data[4 * i];
  return { plane, width, height };
}

// The smallest box around pixels brighter than zero, and the brightest value; null when blank.
export function inkBounds({ plane, width, height }) {
  let top = height, bottom = -1, left = width, right = -1, peak = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = plane[y * width + x];
      if (v > 0) {
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
        if (v > peak) peak = v;
      }
    }
  }
  return peak > 0 ? { top, bottom: bottom + 1, left, right: right + 1, peak } : null;
}

// Crop to the box and stretch the brightest pixel to 255 (mnist_convention's crop).
function cropStretched({ plane, width }, box) {
  const w = box.right - box.left, h = box.bottom - box.top;
  const out = new Float64Array(w * h);
  const gain = 255 / box.peak;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[y * w + x] = plane[(box.top + y) * width + box.left + x] * gain;
  }
  return { plane: out, width: w, height: h };
}

// One axis of OpenCV's INTER_AREA shrinking (computeResizeAreaTab): for each target pixel, the
// source pixels it covers and the share of each.
function areaWeights(sourceSize, targetSize) {
  const scale = 1 / (targetSize / sourceSize);
  const table = [];
  for (let d = 0; d < targetSize; d++) {
    const start = d * scale, end = start + scale;
    const cell = Math.min(scale, sourceSize - start);
    let first = Math.ceil(start);
    const last = Math.min(Math.floor(end), sourceSize - 1);
    first = Math.min(first, last);
    const weights = [];
    if (first - start > 1e-3) weights.push([first - 1, (first - start) / cell]);
    for (let s = first; s < last; s++) weights.push([s, 1 / cell]);
    if (end - last > 1e-3) weights.push([last, Math.min(end - last, 1, cell) / cell]);
    table.push(weights);
  }
  return table;
}

// One axis of OpenCV's bilinear resize (pixel centres aligned, edges repeated), for the rare
// drawing smaller than its target size.
function linearWeights(sourceSize, targetSize) {
  const scale = sourceSize / targetSize;
  const table = [];
  for (let d = 0; d < targetSize; d++) {
    const f = Math.max(0, (d + 0.5) * scale - 0.5);
    const s = Math.min(Math.floor(f), sourceSize - 1);
    const t = Math.min(f - s, 1);
    table.push(s + 1 < sourceSize ? [[s, 1 - t], [s + 1, t]] : [[s, 1]]);
  }
  return table;
}

// cv2.resize(image, (width, height), interpolation=INTER_AREA): area averaging when both axes
// shrink (or keep their size), bilinear otherwise, as OpenCV does.
export function resizeArea(image, width, height) {
  const shrink = width <= image.width && height <= image.height;
  const weigh = shrink ? areaWeights : linearWeights;
  const xs = weigh(image.width, width), ys = weigh(image.height, height);
  const out = new Float64Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (const [sy, wy] of ys[y]) {
        let row = 0;
        for (const [sx, wx] of xs[x]) row += wx * image.plane[sy * image.width + sx];
        sum += wy * row;
      }
      out[y * width + x] = sum;
    }
  }
  return { plane: out, width, height };
}

// fit_in_box: the longer side becomes `box` pixels, the aspect ratio kept, values within 0..255.
// The page's pen is wider than the box, so a drawn digit is always shrunk (fit_in_box enlarges
// with INTER_CUBIC, which is not copied here).
export function fitInBox(image, box = BOX) {
  const scale = box / Math.max(image.height, image.width);
  const width = Math.max(1, roundHalfEven(image.width * scale));
  const height = Math.max(1, roundHalfEven(image.height * scale));
  const out = resizeArea(image, width, height);
  for (let i = 0; i < out.plane.length; i++) out.plane[i] = Math.min(255, Math.max(0, out.plane[i]));
  return out;
}

// center_by_mass: move the image so its centre of mass lands on (field / 2, field / 2) of a
// field x field image; bilinear, zero outside (cv2.warpAffine with a float32 shift).
export function centerByMass(image, field = FIELD) {
  const { plane, width, height } = image;
  let m00 = 0, m10 = 0, m01 = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = plane[y * width + x];
      m00 += v;
      m10 += x * v;
      m01 += y * v;
    }
  }
  const cx = m00 > 0 ? m10 / m00 : (width - 1) / 2;
  const cy = m00 > 0 ? m01 / m00 : (height - 1) / 2;
  const dx = Math.fround(field / 2 - cx), dy = Math.fround(field / 2 - cy);
  const at = (x, y) => (x >= 0 && x < width && y >= 0 && y < height ? plane[y * width + x] : 0);
  const out = new Float64Array(field * field);
  for (let y = 0; y < field; y++) {
    for (let x = 0; x < field; x++) {
      const sx = x - dx, sy = y - dy;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      out[y * field + x] =
        (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) +
        fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
    }
  }
  return { plane: out, width: field, height: field };
}

// mnist_convention for a drawing: the 28x28 uint8 image the digit model reads, or null when
// there is no ink. (numpy's astype(uint8) truncates, so this does too.)
export function digitImage(imageData) {
  const ink = inkPlane(imageData);
  const box = inkBounds(ink);
  if (box === null) return null;
  const centred = centerByMass(fitInBox(cropStretched(ink, box)));
  return Uint8Array.from(centred.plane, (v) => Math.trunc(Math.min(255, Math.max(0, v))));
}

// The end of preprocess_number_photo for a drawing: the ink cropped, scaled so its height is the
// 20-in-28 share of the strip's height, centred vertically, 4 pixels of margin at each end,
// padded to at least STRIP_WIDTH and to a multiple of 4. Returns {pixels, width} or null.
export function numberStrip(imageData, height = STRIP_HEIGHT, minWidth = STRIP_WIDTH) {
  const ink = inkPlane(imageData);
  const box = inkBounds(ink);
  if (box === null) return null;
  const crop = cropStretched(ink, box);
  for (let i = 0; i < crop.plane.length; i++) crop.plane[i] = Math.trunc(crop.plane[i]);
  const inkHeight = roundHalfEven((height * BOX) / FIELD);
  const width = Math.max(1, roundHalfEven((crop.width * inkHeight) / crop.height));
  const resized = resizeArea(crop, width, inkHeight);
  const padded = Math.max(minWidth, Math.ceil((width + 8) / 4) * 4);
  const pixels = new Uint8Array(height * padded);
  const top = Math.floor((height - inkHeight) / 2);
  for (let y = 0; y < inkHeight; y++) {
    for (let x = 0; x < width; x++) {
      pixels[(top + y) * padded + 4 + x] = Math.min(255, Math.round(resized.plane[y * width + x]));
    }
  }
  return { pixels, width: padded, height };
}

// Probabilities from logits.
export function softmax(logits) {
  const peak = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - peak));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

// Greedy CTC decoding of (T, units) logits: the best unit per column, repeats collapsed, blanks
// dropped; the confidence is the product of the chosen units' probabilities
// (hwr_utils.ctc.greedy_decode and best_path_confidence).
export function greedyDecode(logits, columns, units) {
  const symbols = [];
  let previous = BLANK, confidence = 1;
  for (let t = 0; t < columns; t++) {
    const probabilities = softmax(logits.subarray(t * units, (t + 1) * units));
    let best = 0;
    for (let u = 1; u < units; u++) if (probabilities[u] > probabilities[best]) best = u;
    confidence *= probabilities[best];
    if (best !== previous && best !== BLANK) symbols.push(best);
    previous = best;
  }
  return { symbols, confidence };
}

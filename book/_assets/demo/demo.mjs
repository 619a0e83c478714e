// The page "Draw a digit": the book's exported models, run in the reader's browser by ONNX
// Runtime Web (WebAssembly, one thread: book hosts send no cross-origin-isolation headers).
// Everything is served by the book itself; nothing is fetched from elsewhere.
//
// Test hooks (a contract with tests/test_browser.py): data-hwr="canvas", "prediction" (its text
// is the digit, empty before any ink) and "clear"; the number reader's "number-canvas",
// "number-reading" and "number-clear". window.hwrDemo exposes what the tests measure.

import * as ort from "./ort/ort.wasm.bundle.min.mjs";
import { digitImage, FIELD, greedyDecode, numberStrip, softmax } from "./preprocess.mjs";

// The bundle carries its loader and finds its .wasm beside itself (in ./ort/).
ort.env.wasm.numThreads = 1;

const find = (name) => document.querySelector(`[data-hwr="${name}"]`);
// Each model's class names (its model card's, recorded in the manifest): the page shows them,
// not the index of an output.
const manifest = fetch(new URL("./manifest.json", import.meta.url)).then((r) => r.json());
const classNames = async (file) => (await manifest).models[file].class_names;
const status = find("status");

// A canvas to draw on with mouse, pen or finger: white ink on black, as MNIST's digits are.
// `changed` runs at most once per animation frame while ink is being added.
function drawingPad(canvas, penWidth, changed) {
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const clear = () => {
    context.fillStyle = "black";
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  context.strokeStyle = "white";
  context.lineWidth = penWidth;
  context.lineCap = "round";
  context.lineJoin = "round";
  let last = null, pending = false;
  const point = (event) => {
    const r = canvas.getBoundingClientRect(); // the canvas may be shown smaller than it is
    return [
      ((event.clientX - r.left) * canvas.width) / r.width,
      ((event.clientY - r.top) * canvas.height) / r.height,
    ];
  };
  const schedule = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      changed();
    });
  };
  const stroke = (to) => {
    context.beginPath();
    context.moveTo(...last);
    context.lineTo(...to);
    context.stroke();
    last = to;
    schedule();
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last); // a dot for a tap
  });
  canvas.addEventListener("pointermove", (event) => {
    if (last !== null) stroke(point(event));
  });
  for (const end of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(end, () => {
      last = null;
    });
  }
  return {
    pixels: () => context.getImageData(0, 0, canvas.width, canvas.height),
    clear,
  };
}

// Show the 28x28 image the model reads, enlarged without smoothing.
function showInput(canvas, image) {
  const context = canvas.getContext("2d");
  const picture = context.createImageData(FIELD, FIELD);
  for (let i = 0; i < FIELD * FIELD; i++) {
    const v = image === null ? 0 : image[i];
    picture.data.set([v, v, v, 255], 4 * i);
  }
  context.putImageData(picture, 0, 0);
}

function showTop3(list, probabilities, names) {
  list.replaceChildren();
  if (probabilities === null) return;
  const ranked = probabilities.map((p, k) => [p, names[k]]).sort((a, b) => b[0] - a[0]);
  for (const [p, digit] of ranked.slice(0, 3)) {
    const row = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "hwr-bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    row.append(`${digit}  ${(100 * p).toFixed(1)} %`, bar);
    list.append(row);
  }
}

// An update that answers the latest ink: while one is running (state.busy), further calls are
// folded into one more run after it, so answers never pile up behind a fast pen.
function latestOnly(state, work) {
  let again = false;
  const update = async () => {
    if (state.busy) {
      again = true;
      return;
    }
    state.busy = true;
    const start = performance.now();
    if (await work()) state.timings.push(performance.now() - start);
    state.updates += 1;
    state.busy = false;
    if (again) {
      again = false;
      update();
    }
  };
  return update;
}

const timed = async (work) => {
  const start = performance.now();
  const result = await work();
  return [result, performance.now() - start];
};

async function startDigit(state) {
  const [session, ms] = await timed(() =>
    ort.InferenceSession.create(new URL("./hwrnet.onnx", import.meta.url).href),
  );
  state.sessionMs = ms;
  const names = await classNames("hwrnet.onnx");
  const prediction = find("prediction"), top3 = find("top3"), input = find("input");
  // Returns whether the model ran (no ink: nothing to time).
  const update = latestOnly(state, async () => {
    const image = digitImage(pad.pixels());
    state.lastInput = image;
    showInput(input, image);
    if (image === null) {
      prediction.textContent = "";
      showTop3(top3, null, names);
      return false;
    }
    const pixels = Float32Array.from(image, (v) => v / 255);
    const tensor = new ort.Tensor("float32", pixels, [1, 1, FIELD, FIELD]);
    const { logits } = await session.run({ images: tensor });
    const probabilities = softmax(logits.data);
    prediction.textContent = names[probabilities.indexOf(Math.max(...probabilities))];
    state.lastProbabilities = probabilities;
    showTop3(top3, probabilities, names);
    return true;
  });
  const pad = drawingPad(find("canvas"), 22, update); // a pen wider than the 20-pixel box
  find("clear").addEventListener("click", () => {
    pad.clear();
    update();
  });
  state.ready = true;
}

async function startNumber(state) {
  const [session, ms] = await timed(() =>
    ort.InferenceSession.create(new URL("./crnn.onnx", import.meta.url).href),
  );
  state.sessionMs = ms;
  const alphabet = await classNames("crnn.onnx");
  const reading = find("number-reading");
  const update = latestOnly(state, async () => {
    const strip = numberStrip(pad.pixels());
    if (strip === null) {
      reading.textContent = state.lastText = "";
      return false;
    }
    const pixels = Float32Array.from(strip.pixels, (v) => v / 255);
    const tensor = new ort.Tensor("float32", pixels, [1, 1, strip.height, strip.width]);
    const { logits } = await session.run({ images: tensor });
    const [, columns, units] = logits.dims;
    const { symbols, confidence } = greedyDecode(logits.data, columns, units);
    reading.textContent = state.lastText = symbols.map((unit) => alphabet[unit]).join("");
    reading.title = `confidence ${confidence.toFixed(3)}`;
    return true;
  });
  const pad = drawingPad(find("number-canvas"), 9, update);
  find("number-clear").addEventListener("click", () => {
    pad.clear();
    update();
  });
  state.ready = true;
}

const demo = {
  digit: { ready: false, busy: false, timings: [], updates: 0, lastInput: null, sessionMs: null },
  number: { ready: false, busy: false, timings: [], updates: 0, lastText: "", sessionMs: null },
  error: null,
};
window.hwrDemo = demo;
Promise.all([startDigit(demo.digit), startNumber(demo.number)])
  .then(() => {
    status.textContent = `Ready: the models load in ${Math.round(demo.digit.sessionMs)} ms and ${Math.round(demo.number.sessionMs)} ms in this browser. Draw!`;
  })
  .catch((error) => {
    demo.error = String(error);
    status.textContent =
      `The models could not start (${error}). ` +
      "Open the book over http(s): browsers do not run WebAssembly modules from file:// pages.";
  });

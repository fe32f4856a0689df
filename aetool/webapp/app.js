/* aetool web: a bundle's latent space in the browser.
 *
 * Plain script, no build step.  It reads site.json (written by `aetool web`), loads onnxruntime-web,
 * and for the chosen bundle its encoder.onnx, decoder.onnx, latent.json (the same files the Python
 * runtime reads) and map.json (the map's points, computed at build time).  Densities, sampling and
 * the anomaly score are computed here from latent.json's parameters, with the formulas of
 * aetool/density.py and aetool/anomaly.py.  window.aetool is a small API the tests drive.
 */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const errors = [];
  const LOG2PI = Math.log(2 * Math.PI);

  // ------------------------------------------------------------------ random numbers
  /** mulberry32: a small seeded 32-bit PRNG, uniform in [0, 1). */
  function mulberry32(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  /** Standard normals from a uniform source (Box-Muller, both outputs used). */
  function normals(uniform) {
    let spare = null;
    return () => {
      if (spare !== null) { const s = spare; spare = null; return s; }
      let u = 0;
      while (u === 0) u = uniform();
      const r = Math.sqrt(-2 * Math.log(u)), t = 2 * Math.PI * uniform();
      spare = r * Math.sin(t);
      return r * Math.cos(t);
    };
  }

  // ------------------------------------------------------------------ anomaly maps (aetool/anomaly_maps.py)
  const MAP_SIGMA = 4, MAP_TOP_SHARE = 0.01, BOX_PASSES = 3;
  /** anomaly_maps._box_widths: odd box widths whose passes make (about) a Gaussian of sigma. */
  function boxWidths(sigma) {
    const ideal = Math.sqrt(12 * sigma * sigma / BOX_PASSES + 1);
    let lower = Math.trunc(ideal) - (1 - Math.trunc(ideal) % 2);
    lower = Math.max(lower, 1);
    const m = Math.round((12 * sigma * sigma - BOX_PASSES * lower * lower - 4 * BOX_PASSES * lower - 3 * BOX_PASSES) / (-4 * lower - 4));
    return Array.from({ length: BOX_PASSES }, (_, i) => (i < m ? lower : lower + 2));
  }
  /** anomaly_maps._box along the rows of an (n, cols) array: numpy's reflect padding, then its edge values. */
  function boxRows(a, n, cols, width) {
    const r = width >> 1, mirror = Math.min(r, n - 1), out = new Float32Array(n * cols), acc = new Float64Array(cols);
    if (r === 0) return a;
    const src = (i) => (i < 0 ? Math.min(-i, mirror) : i > n - 1 ? n - 1 - Math.min(i - (n - 1), mirror) : i);
    for (let i = -r; i <= r; i++) { const o = src(i) * cols; for (let c = 0; c < cols; c++) acc[c] += a[o + c]; }
    for (let c = 0; c < cols; c++) out[c] = acc[c] / width;
    for (let i = 1; i < n; i++) {
      const add = src(i + r) * cols, sub = src(i - r - 1) * cols;
      for (let c = 0; c < cols; c++) { acc[c] += a[add + c]; acc[c] -= a[sub + c]; out[i * cols + c] = acc[c] / width; }
    }
    return out;
  }
  function transpose(a, n, cols) {
    const t = new Float32Array(n * cols);
    for (let i = 0; i < n; i++) for (let c = 0; c < cols; c++) t[c * n + i] = a[i * cols + c];
    return t;
  }
  /** anomaly_maps.gaussian_blur of an (H, W) map. */
  function gaussianBlur(m, H, W, sigma = MAP_SIGMA) {
    let out = Float32Array.from(m);
    for (const width of boxWidths(sigma)) out = transpose(boxRows(transpose(boxRows(out, H, W, width), H, W), W, H, width), W, H);
    return out;
  }
  /** anomaly_maps.error_map: the squared error summed over the channels, smoothed. */
  function errorMap(x, recon, C, H, W) {
    const se = new Float32Array(H * W);
    for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) { const d = Math.fround(x[c * H * W + p] - recon[c * H * W + p]); se[p] += d * d; }
    return gaussianBlur(se, H, W);
  }
  const DETAIL_SIGMA = 2;
  /** anomaly_maps.detail_energy: a picture's detail beyond a blur of sigma, squared, summed over the channels. */
  function detailEnergy(x, C, H, W, sigma) {
    const detail = new Float32Array(H * W);
    for (let c = 0; c < C; c++) {
      const plane = x.slice(c * H * W, (c + 1) * H * W), blurred = gaussianBlur(plane, H, W, sigma);
      for (let p = 0; p < H * W; p++) { const d = Math.fround(plane[p] - blurred[p]); detail[p] += Math.fround(d * d); }
    }
    return detail;
  }
  /** anomaly_maps.texture_energy: the detail beyond a blur of DETAIL_SIGMA, smoothed. */
  function textureEnergy(x, C, H, W) {
    return gaussianBlur(detailEnergy(x, C, H, W, DETAIL_SIGMA), H, W);
  }
  /** anomaly_maps.reconstruction_map: the smoothed error over the lesser texture energy of picture and reconstruction
   *  plus the picture's own mean smoothed error. */
  function anomalyMap(x, recon, C, H, W) {
    const error = errorMap(x, recon, C, H, W), ex = textureEnergy(x, C, H, W), ey = textureEnergy(recon, C, H, W);
    let sum = 0;
    for (let p = 0; p < H * W; p++) sum += error[p];
    const floor = Math.fround(Math.max(sum / (H * W), 1e-12)), out = new Float32Array(H * W);
    for (let p = 0; p < H * W; p++) out[p] = error[p] / Math.fround(Math.min(ex[p], ey[p]) + floor);
    return out;
  }
  const LOG_FLOOR = 1e-5, STEP = 2, LARGE = 4000000, LARGE_STEP = 4;
  /** anomaly_maps.local_features: per neighbourhood of each sigma, every channel's mean level and each band's
   *  log detail energy; an array of D (H, W) maps. */
  function localFeatures(x, C, H, W, sigmas, bands) {
    const planes = Array.from({ length: C }, (_, c) => x.slice(c * H * W, (c + 1) * H * W));
    const detail = bands.map((s) => detailEnergy(x, C, H, W, s));
    const out = [];
    for (const sigma of sigmas) {
      for (const plane of planes) out.push(gaussianBlur(plane, H, W, sigma));
      for (const e of detail) out.push(gaussianBlur(e, H, W, sigma).map((v) => Math.log(v + LOG_FLOOR)));
    }
    return out;
  }
  /** anomaly_maps.AppearanceModel.distance: each pixel's whitened distance to the nearest normal neighbourhood
   *  of the calibration's bank, measured every STEP pixels, spread back and smoothed. */
  function appearanceMap(x, C, H, W, app) {
    const step = H * W > LARGE ? LARGE_STEP : STEP;  // anomaly_maps.step
    const f = localFeatures(x, C, H, W, app.sigmas, app.bands), D = f.length, gh = Math.ceil(H / step), gw = Math.ceil(W / step);
    const half = app.bank.map((b) => 0.5 * b.reduce((a, v) => a + v * v, 0)), v = new Float64Array(D), q = new Float64Array(D);
    const coarse = new Float32Array(gh * gw);
    for (let i = 0; i < gh; i++) for (let j = 0; j < gw; j++) {
      const p = i * step * W + j * step;
      for (let k = 0; k < D; k++) v[k] = f[k][p] - app.mean[k];
      let qq = 0;
      for (let m = 0; m < D; m++) { let a = 0; for (let k = m; k < D; k++) a += v[k] * app.whiten[k][m]; q[m] = a; qq += a * a; }
      let best = -Infinity;
      for (let n = 0; n < app.bank.length; n++) {
        const b = app.bank[n];
        let dot = -half[n];
        for (let m = 0; m < D; m++) dot += q[m] * b[m];
        if (dot > best) best = dot;
      }
      coarse[i * gw + j] = Math.sqrt(Math.max(qq - 2 * best, 0));
    }
    const spread = new Float32Array(H * W);
    for (let y = 0; y < H; y++) for (let X = 0; X < W; X++) spread[y * W + X] = coarse[Math.floor(y / step) * gw + Math.floor(X / step)];
    return gaussianBlur(spread, H, W, step / 2);
  }
  /** anomaly_maps.image_score: the mean of the map's highest share. */
  function imageScore(map, share = MAP_TOP_SHARE) {
    const k = Math.max(1, Math.floor(share * map.length + 0.5)), sorted = Float32Array.from(map).sort();
    let sum = 0;
    for (let i = map.length - k; i < map.length; i++) sum += sorted[i];
    return sum / k;
  }

  // ------------------------------------------------------------------ densities (aetool/density.py)
  /** Lower Cholesky factor of a symmetric positive definite matrix (array of rows). */
  function cholesky(a) {
    const d = a.length, l = a.map(() => new Float64Array(d));
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        let s = a[i][j];
        for (let k = 0; k < j; k++) s -= l[i][k] * l[j][k];
        if (i === j) {
          if (!(s > 0)) throw new Error("a mixture covariance is not positive definite");
          l[i][i] = Math.sqrt(s);
        } else l[i][j] = s / l[j][j];
      }
    }
    return l;
  }
  function logSumExp(v) {
    const top = Math.max(...v);
    return top + Math.log(v.reduce((s, x) => s + Math.exp(x - top), 0));
  }
  /** A density from latent.json's parameters (fields as aetool/bundle_format.py's DiagonalGaussianParams
   *  and GaussianMixtureParams define them): sample(n, seed), logProb(z), moments(). */
  function makeDensity(p) {
    if (p.kind === "diagonal_gaussian") {
      const mean = p.mean, v = p.var, d = mean.length, sd = v.map(Math.sqrt);
      return {
        kind: p.kind, d,
        sample(n, seed) {
          const g = normals(mulberry32(seed));
          return Array.from({ length: n }, () => mean.map((m, i) => m + sd[i] * g()));
        },
        logProb(z) {
          let s = 0;
          for (let i = 0; i < d; i++) s += (z[i] - mean[i]) ** 2 / v[i] + Math.log(2 * Math.PI * v[i]);
          return -0.5 * s;
        },
        moments() { return { mean: mean.slice(), cov: mean.map((_, i) => mean.map((_, j) => (i === j ? v[i] : 0))) }; },
      };
    }
    if (p.kind === "gaussian_mixture") {
      const w = p.weights, mus = p.means, covs = p.covs, k = w.length, d = mus[0].length;
      const chol = covs.map(cholesky);
      const halfLogDet = chol.map((l) => l.reduce((s, row, i) => s + Math.log(row[i]), 0));
      const cum = []; w.reduce((s, x, i) => (cum[i] = s + x), 0);
      return {
        kind: p.kind, d,
        sample(n, seed) {
          const u = mulberry32(seed), g = normals(mulberry32((seed ^ 0x9e3779b9) >>> 0));
          return Array.from({ length: n }, () => {
            const r = u() * cum[k - 1];
            let j = 0;
            while (j < k - 1 && r >= cum[j]) j++;
            const eps = Array.from({ length: d }, g), l = chol[j];
            return mus[j].map((m, a) => { let s = m; for (let b = 0; b <= a; b++) s += l[a][b] * eps[b]; return s; });
          });
        },
        logProb(z) {
          const terms = [];
          for (let j = 0; j < k; j++) {
            const l = chol[j], y = new Float64Array(d);  // L y = z - mu: Mahalanobis distance |y|^2
            let m = 0;
            for (let a = 0; a < d; a++) {
              let s = z[a] - mus[j][a];
              for (let b = 0; b < a; b++) s -= l[a][b] * y[b];
              y[a] = s / l[a][a];
              m += y[a] * y[a];
            }
            terms.push(Math.log(w[j]) - halfLogDet[j] - 0.5 * d * LOG2PI - 0.5 * m);
          }
          return logSumExp(terms);
        },
        moments() {
          const mean = Array.from({ length: d }, (_, a) => mus.reduce((s, mu, j) => s + w[j] * mu[a], 0));
          const cov = mean.map((_, a) => mean.map((_, b) =>
            mus.reduce((s, mu, j) => s + w[j] * (covs[j][a][b] + (mu[a] - mean[a]) * (mu[b] - mean[b])), 0)));
          return { mean, cov };
        },
      };
    }
    throw new Error(`unknown density kind ${p.kind}`);
  }

  // ------------------------------------------------------------------ preprocessing (aetool/image_input.py)
  /** Pillow's separable LANCZOS resampling (support 3, widened when shrinking), in float. */
  function lanczos(x) {
    if (x === 0) return 1;
    if (x <= -3 || x >= 3) return 0;
    const px = Math.PI * x;
    return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
  }
  function coeffs(inSize, outSize) {
    const scale = inSize / outSize, filterscale = Math.max(scale, 1), support = 3 * filterscale;
    const out = [];
    for (let xx = 0; xx < outSize; xx++) {
      const centre = (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(centre + support + 0.5), inSize);
      const k = [];
      let ww = 0;
      for (let x = xmin; x < xmax; x++) { const v = lanczos((x - centre + 0.5) / filterscale); k.push(v); ww += v; }
      out.push({ xmin, k: ww !== 0 ? k.map((v) => v / ww) : k });
    }
    return out;
  }
  function resize(src, sw, sh, dw, dh) {
    let cur = src, w = sw;
    if (dw !== sw) {
      const cs = coeffs(sw, dw), tmp = new Float32Array(dw * sh);
      for (let y = 0; y < sh; y++) for (let x = 0; x < dw; x++) {
        const { xmin, k } = cs[x]; let s = 0;
        for (let i = 0; i < k.length; i++) s += cur[y * w + xmin + i] * k[i];
        tmp[y * dw + x] = s;
      }
      cur = tmp; w = dw;
    }
    if (dh !== sh) {
      const cs = coeffs(sh, dh), tmp = new Float32Array(w * dh);
      for (let y = 0; y < dh; y++) {
        const { xmin, k } = cs[y];
        for (let x = 0; x < w; x++) { let s = 0; for (let i = 0; i < k.length; i++) s += cur[(xmin + i) * w + x] * k[i]; tmp[y * w + x] = s; }
      }
      cur = tmp;
    }
    return Float32Array.from(cur, (v) => Math.min(Math.max(v, 0), 1));
  }
  /** image_input.py mnist_normalise: crop to the ink, fit it in 20x20, centre its mass in 28x28. */
  function mnistNormalise(grey, w, h) {
    const SIZE = 28, BOX = 20;
    let top = h, bottom = -1, left = w, right = -1;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (grey[y * w + x] > 0.1) {
      top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
    }
    if (bottom < 0) return resize(grey, w, h, SIZE, SIZE);
    const ph = bottom - top + 1, pw = right - left + 1, patch = new Float32Array(ph * pw);
    for (let y = 0; y < ph; y++) for (let x = 0; x < pw; x++) patch[y * pw + x] = grey[(top + y) * w + left + x];
    const s = BOX / Math.max(ph, pw), nh = Math.max(1, Math.round(ph * s)), nw = Math.max(1, Math.round(pw * s));
    const small = resize(patch, pw, ph, nw, nh);
    let total = 0, cy = 0, cx = 0;
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) { const v = small[y * nw + x]; total += v; cy += v * y; cx += v * x; }
    if (total > 0) { cy /= total; cx /= total; } else { cy = (nh - 1) / 2; cx = (nw - 1) / 2; }
    const centre = (SIZE - 1) / 2;
    // Python's round() rounds halves to even; Math.round rounds them up: equal except at exact halves
    const roundEven = (v) => { const r = Math.round(v); return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r; };
    const oy = Math.min(Math.max(roundEven(centre - cy), 0), SIZE - nh), ox = Math.min(Math.max(roundEven(centre - cx), 0), SIZE - nw);
    const out = new Float32Array(SIZE * SIZE);
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) out[(oy + y) * SIZE + ox + x] = small[y * nw + x];
    return out;
  }
  /** RGBA bytes -> the bundle's input (C*H*W floats), by its ImageSpec's preprocessing. */
  function preprocess(rgba, w, h, image) {
    const n = w * h;
    if (image.preprocessing === "mnist_digit") {
      // image_input.py load_image: luma, transparency onto the colour opposite the ink, a light border inverted
      const grey = new Float32Array(n), alpha = new Float32Array(n);
      let opaque = 0, inkSum = 0, anyAlpha = false;
      for (let i = 0; i < n; i++) {
        grey[i] = (rgba[4 * i] / 255) * 0.299 + (rgba[4 * i + 1] / 255) * 0.587 + (rgba[4 * i + 2] / 255) * 0.114;
        alpha[i] = rgba[4 * i + 3] / 255;
        if (alpha[i] < 1) anyAlpha = true;
        if (alpha[i] > 0.5) { opaque++; inkSum += grey[i]; }
      }
      if (anyAlpha) {
        const bg = opaque === 0 ? 0 : (inkSum / opaque < 0.5 ? 1 : 0);
        for (let i = 0; i < n; i++) grey[i] = grey[i] * alpha[i] + bg * (1 - alpha[i]);
      }
      let border = 0;
      for (let x = 0; x < w; x++) border += grey[x] + grey[(h - 1) * w + x];
      for (let y = 0; y < h; y++) border += grey[y * w] + grey[y * w + w - 1];
      const invert = border / (2 * w + 2 * h) > 0.5;
      for (let i = 0; i < n; i++) grey[i] = Math.min(Math.max(invert ? 1 - grey[i] : grey[i], 0), 1);
      return { x: w === 28 && h === 28 ? grey : mnistNormalise(grey, w, h), grey };
    }
    // own_size (image_input.py own_size_uint8): planes onto black at the picture's own size, 8 bits, / 255
    if (image.preprocessing === "own_size") {
      const C = image.channels, out = new Float32Array(C * n);
      for (let c = 0; c < C; c++) for (let i = 0; i < n; i++) {
        const a = rgba[4 * i + 3] / 255, r = rgba[4 * i] / 255, g = rgba[4 * i + 1] / 255, b = rgba[4 * i + 2] / 255;
        out[c * n + i] = Math.round((C === 1 ? r * 0.299 + g * 0.587 + b * 0.114 : [r, g, b][c]) * a * 255) / 255;
      }
      return { x: out, grey: null };
    }
    // resize_pad / resize_crop (image_input.py picture_to_uint8): planes onto black, fitted, 8 bits, / 255
    const C = image.channels, H = image.height, W = image.width, planes = [];
    for (let c = 0; c < C; c++) {
      const p = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const a = rgba[4 * i + 3] / 255, r = rgba[4 * i] / 255, g = rgba[4 * i + 1] / 255, b = rgba[4 * i + 2] / 255;
        p[i] = (C === 1 ? r * 0.299 + g * 0.587 + b * 0.114 : [r, g, b][c]) * a;
      }
      planes.push(p);
    }
    const out = new Float32Array(C * H * W);
    let rows = [0, h], cols = [0, w], nw = W, nh = H, top = 0, left = 0;
    if (image.preprocessing === "resize_crop") {
      const side = Math.min(w, h); rows = [(h - side) >> 1, ((h - side) >> 1) + side]; cols = [(w - side) >> 1, ((w - side) >> 1) + side];
    } else {
      const s = W / Math.max(w, h);
      nw = Math.max(1, Math.min(W, Math.round(w * s))); nh = Math.max(1, Math.min(H, Math.round(h * s)));
      top = (H - nh) >> 1; left = (W - nw) >> 1;
    }
    const cw = cols[1] - cols[0], ch = rows[1] - rows[0];
    for (let c = 0; c < C; c++) {
      const cut = new Float32Array(cw * ch);
      for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) cut[y * cw + x] = planes[c][(rows[0] + y) * w + cols[0] + x];
      const r = resize(cut, cw, ch, nw, nh);
      for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) out[c * H * W + (top + y) * W + left + x] = Math.round(r[y * nw + x] * 255) / 255;
    }
    return { x: out, grey: null };
  }

  // ------------------------------------------------------------------ pictures on canvases
  function toCanvas(canvas, data, shape, range) {
    const [C, H, W] = shape, [lo, hi] = range || [0, 1];
    const off = document.createElement("canvas"); off.width = W; off.height = H;
    const ctx = off.getContext("2d"), img = ctx.createImageData(W, H);
    for (let i = 0; i < H * W; i++) {
      for (let c = 0; c < 3; c++) {
        const v = data[(C === 3 ? c : 0) * H * W + i];
        img.data[4 * i + c] = Math.round(Math.min(Math.max((v - lo) / (hi - lo), 0), 1) * 255);
      }
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    const g = canvas.getContext("2d");
    g.imageSmoothingEnabled = false;
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.drawImage(off, 0, 0, canvas.width, canvas.height);
  }
  function grid(canvas, images, shape, range, ncols, scale) {
    const [, H, W] = shape, pad = 2, n = images.length, rows = Math.ceil(n / ncols);
    canvas.width = (ncols * (W + pad) + pad) * scale; canvas.height = (rows * (H + pad) + pad) * scale;
    const g = canvas.getContext("2d");
    g.fillStyle = "#404040"; g.fillRect(0, 0, canvas.width, canvas.height);
    const cell = document.createElement("canvas"); cell.width = W * scale; cell.height = H * scale;
    images.forEach((im, i) => {
      toCanvas(cell, im, shape, range);
      g.drawImage(cell, (pad + (i % ncols) * (W + pad)) * scale, (pad + Math.floor(i / ncols) * (H + pad)) * scale);
    });
  }

  /** Calls fn with the latest argument only: a slider dragged faster than the model decodes skips frames. */
  function latest(fn) {
    let busy = false, next = null;
    const call = (arg) => {
      next = arg;
      if (busy) return;
      busy = true;
      (async () => {
        while (next !== null) { const a = next; next = null; try { await fn(a); } catch (e) { report(e); } }
        busy = false;
      })();
    };
    call.busy = () => busy;
    return call;
  }
  function report(e) {
    errors.push(String(e && e.message || e));
    const s = $("status"); s.textContent = `error: ${e && e.message || e}`; s.className = "error";
    console.error(e);
  }

  // ------------------------------------------------------------------ a bundle in onnxruntime-web
  /** The graphs' shapes after the batch axis, from latent.json's `d` and `image` alone: the rule is
   *  defined once in aetool/bundle_format.py (graph_shapes, check_graph_shapes) and documented in
   *  docs/bundle-format.md; the page builds its tensors from these and checks the graphs by them. */
  function graphShapes(meta) {
    if (isMap(meta)) {  // a map: symbolic sides, (C, "height", "width") <-> (d, "height/f", "width/f")
      const f = meta.latent.factor, pictures = [meta.image.channels, "height", "width"], codes = [meta.d, `height/${f}`, `width/${f}`];
      return { "encoder input": pictures, "encoder output": codes, "decoder input": codes, "decoder output": pictures };
    }
    const image = [meta.image.channels, meta.image.height, meta.image.width], latent = [meta.d, 1, 1];
    return { "encoder input": image, "encoder output": latent, "decoder input": latent, "decoder output": image };
  }
  /** latent.json's `latent`: absent (schema 1, 2) or kind "vector" for a code vector, "map" for a map. */
  function isMap(meta) { return !!(meta.latent && meta.latent.kind === "map"); }
  /** check_graph_shapes: the latent's axes exactly d, 1, 1; an image axis may also be symbolic.
   *  A map's graphs: only the channel axes (C and d) are numbers to check. */
  function checkGraphShapes(meta, encoder, decoder) {
    const want = graphShapes(meta), map = isMap(meta);
    const found = {
      "encoder input": encoder.inputMetadata?.[0], "encoder output": encoder.outputMetadata?.[0],
      "decoder input": decoder.inputMetadata?.[0], "decoder output": decoder.outputMetadata?.[0],
    };
    for (const [end, info] of Object.entries(found)) {
      if (!info || !info.isTensor || !Array.isArray(info.shape)) continue;  // a runtime that does not say
      const axes = info.shape.slice(1), image = end === "encoder input" || end === "decoder output";
      const fits = info.shape.length === 4 && (map ? (axes[0] === want[end][0] || (image && typeof axes[0] !== "number")) :
        want[end].every((n, i) => axes[i] === n || (image && typeof axes[i] !== "number")));
      if (!fits) {
        throw new Error(`graph shapes: ${end} [${info.shape.join(", ")}] disagrees with ` +
                        (image ? `the image ${want[end].join("x")}` : `d=${meta.d}`) + " in latent.json");
      }
    }
  }
  class Model {
    static async load(entry) {
      const m = new Model();
      m.entry = entry;
      const get = async (file) => { const r = await fetch(entry.path + file); if (!r.ok) throw new Error(`${entry.path}${file}: ${r.status}`); return r; };
      m.meta = await (await get("latent.json")).json();
      m.map = await (await get("map.json")).json();
      const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
      m.encoder = await ort.InferenceSession.create(entry.path + m.meta.graphs.encoder.file, options);
      m.decoder = await ort.InferenceSession.create(entry.path + m.meta.graphs.decoder.file, options);
      checkGraphShapes(m.meta, m.encoder, m.decoder);
      m.d = m.meta.d;
      m.image = m.meta.image;
      m.isMap = isMap(m.meta);
      m.shapes = graphShapes(m.meta);
      m.shape = m.isMap ? [m.image.channels, m.image.height, m.image.width] : m.shapes["encoder input"];
      m.pixels = m.shape[0] * m.shape[1] * m.shape[2];
      m.densities = Object.fromEntries(Object.entries(m.meta.densities).map(([k, p]) => [k, makeDensity(p)]));
      m.density = m.densities[m.meta.default_density];
      m.queue = Promise.resolve();
      return m;
    }
    /** One session run at a time: onnxruntime-web's sessions are not re-entrant. */
    run(session, input, data, dims) {
      const job = this.queue.then(async () => {
        const out = await session.run({ [input]: new ort.Tensor("float32", data, dims) });
        return out[session.outputNames[0]].data;
      });
      this.queue = job.catch(() => {});
      return job;
    }
    /** Latents (n x d, arrays) -> pictures (n arrays of C*H*W floats). */
    async decode(zs) {
      const n = zs.length, flat = new Float32Array(n * this.d);
      zs.forEach((z, i) => flat.set(z, i * this.d));
      const out = await this.run(this.decoder, this.meta.graphs.decoder.input, flat, [n, ...this.shapes["decoder input"]]);
      return Array.from({ length: n }, (_, i) => out.slice(i * this.pixels, (i + 1) * this.pixels));
    }
    /** Pictures (n arrays of C*H*W floats) -> latents (n arrays of d). */
    async encode(xs) {
      const n = xs.length, flat = new Float32Array(n * this.pixels);
      xs.forEach((x, i) => flat.set(x, i * this.pixels));
      const out = await this.run(this.encoder, this.meta.graphs.encoder.input, flat, [n, ...this.shape]);
      return Array.from({ length: n }, (_, i) => Array.from(out.slice(i * this.d, (i + 1) * this.d)));
    }
    /** aetool/anomaly.py: reconstruction SSE, NLL per dimension under the default density, and the score. */
    score(x, recon, z) {
      let sse = 0;
      for (let i = 0; i < x.length; i++) sse += (x[i] - recon[i]) ** 2;
      return this.verdict(sse, -this.density.logProb(z) / this.d);
    }
    verdict(sse, nll) {
      const cal = this.meta.anomaly;
      const parts = cal ? [(Math.log(sse + 1e-12) - cal.log_sse_mean) / cal.log_sse_std, (nll - cal.nll_mean) / cal.nll_std] : null;
      const score = cal ? (cal.rule === "map" ? parts[0] : cal.rule === "max" ? Math.max(parts[0], parts[1]) : parts[0] + parts[1]) : null;  // aetool.anomaly.combine
      // aetool.anomaly.require_threshold: without a threshold (none set, or too few images for its rate) no verdict
      const threshold = cal && typeof cal.threshold === "number" ? cal.threshold : null;
      return { sse, nll, score, threshold, flagged: threshold === null ? null : !(score <= threshold) };
    }
    /** bundle_format.LatentLayout.padded_size: each side up to a multiple of `multiple`, at least `min_side`. */
    paddedSize(h, w) {
      const L = this.meta.latent, up = (n) => Math.max(Math.ceil(n / L.multiple) * L.multiple, L.min_side);
      return [up(h), up(w)];
    }
    /** A map bundle's Bundle.reconstruct_picture: a (C, h, w) picture padded at its bottom and right by
     *  reflection (numpy's 'reflect', repeated) to paddedSize, through both graphs, cropped back. */
    async reconstructPicture(x, h, w) {
      const C = this.image.channels, [H, W] = this.paddedSize(h, w), f = this.meta.latent.factor;
      const reflect = (i, n) => { if (n === 1) return 0; const p = 2 * n - 2; i %= p; return i < n ? i : p - i; };
      const padded = new Float32Array(C * H * W);
      for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) {
        const sy = reflect(y, h);
        for (let X = 0; X < W; X++) padded[(c * H + y) * W + X] = x[(c * h + sy) * w + reflect(X, w)];
      }
      const z = await this.run(this.encoder, this.meta.graphs.encoder.input, padded, [1, C, H, W]);
      const out = await this.run(this.decoder, this.meta.graphs.decoder.input, z, [1, this.d, H / f, W / f]);
      const recon = new Float32Array(C * h * w);
      for (let c = 0; c < C; c++) for (let y = 0; y < h; y++) recon.set(out.subarray((c * H + y) * W, (c * H + y) * W + w), (c * h + y) * w);
      return { recon, z, zShape: [this.d, H / f, W / f] };
    }
    /** A map bundle's aetool.anomaly.map_parts: SSE per pixel, the mean NLL per dimension over the positions. */
    /** aetool/anomaly.py map_parts: the anomaly map's peak (aetool/anomaly_maps.py) and the mean NLL per position. */
    scoreMap(x, recon, z, zShape, H, W) {
      const app = this.meta.anomaly && this.meta.anomaly.appearance, C = this.image.channels;  // aetool.anomaly.Appearance.of
      const sse = imageScore(app ? appearanceMap(x, C, H, W, app) : anomalyMap(x, recon, C, H, W));
      const [d, h, w] = zShape, code = new Array(d);
      let nll = 0;
      for (let p = 0; p < h * w; p++) { for (let k = 0; k < d; k++) code[k] = z[k * h * w + p]; nll += -this.density.logProb(code) / d; }
      return this.verdict(sse, nll / (h * w));
    }
    /** Bundle.sample of a map bundle: every position's code drawn on its own, n maps of h x w decoded. */
    async sampleMaps(n, seed, kind) {
      const [C, H, W] = this.shape, f = this.meta.latent.factor, [PH, PW] = this.paddedSize(H, W), h = PH / f, w = PW / f;
      const codes = this.densities[kind].sample(n * h * w, seed), flat = new Float32Array(n * this.d * h * w);
      for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) for (let k = 0; k < this.d; k++) flat[(i * this.d + k) * h * w + p] = codes[i * h * w + p][k];
      const out = await this.run(this.decoder, this.meta.graphs.decoder.input, flat, [n, this.d, h, w]);
      return Array.from({ length: n }, (_, i) => {
        const pic = new Float32Array(C * H * W);
        for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) pic.set(out.subarray(((i * C + c) * PH + y) * PW, ((i * C + c) * PH + y) * PW + W), (c * H + y) * W);
        return pic;
      });
    }
    /** A point of the map's plane -> a latent: mean + a * axis1 + b * axis2. */
    fromPlane(a, b) {
      const { mean, axes } = this.map.plane;
      return mean.map((m, i) => m + a * axes[0][i] + b * axes[1][i]);
    }
    toPlane(z) {
      const { mean, axes } = this.map.plane;
      return axes.map((ax) => ax.reduce((s, v, i) => s + v * (z[i] - mean[i]), 0));
    }
  }

  // ------------------------------------------------------------------ the page
  const ui = { model: null, selected: null, drawn: null, a: null, b: null, frames: [], playing: true };
  const MAX_PAGE_SIDE = 1024;  // a map bundle's picture in the page: no tiles here, so a bounded size
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#f2f2f2"];

  function setupMap(m) {
    const canvas = $("map"), pts = m.map.points, labels = m.map.labels;
    let xmin, xmax, ymin, ymax;
    if (pts.length) {
      const xs = pts.map((p) => p[0]).sort((a, b) => a - b), ys = pts.map((p) => p[1]).sort((a, b) => a - b);
      const q = (v, f) => v[Math.min(v.length - 1, Math.max(0, Math.round(f * (v.length - 1))))];
      [xmin, xmax, ymin, ymax] = [q(xs, 0.002), q(xs, 0.998), q(ys, 0.002), q(ys, 0.998)];
    } else {  // no points: +-3.5 standard deviations of the density along the two axes
      const { mean, cov } = m.density.moments(), c = m.toPlane(mean);
      const sd = m.map.plane.axes.map((ax) => Math.sqrt(ax.reduce((s, u, i) => s + u * ax.reduce((t, v, j) => t + cov[i][j] * v, 0), 0)));
      [xmin, xmax, ymin, ymax] = [c[0] - 3.5 * sd[0], c[0] + 3.5 * sd[0], c[1] - 3.5 * sd[1], c[1] + 3.5 * sd[1]];
    }
    const mx = 0.08 * (xmax - xmin || 1), my = 0.08 * (ymax - ymin || 1);
    xmin -= mx; xmax += mx; ymin -= my; ymax += my;
    const W = canvas.width, H = canvas.height;
    const view = {
      toPx: (p) => [((p[0] - xmin) / (xmax - xmin)) * W, (1 - (p[1] - ymin) / (ymax - ymin)) * H],
      fromPx: (x, y) => [xmin + (x / W) * (xmax - xmin), ymin + (1 - y / H) * (ymax - ymin)],
    };
    const base = document.createElement("canvas"); base.width = W; base.height = H;
    const g = base.getContext("2d");
    g.fillStyle = "#000"; g.fillRect(0, 0, W, H);
    g.globalAlpha = 0.75;
    pts.forEach((p, i) => {
      const [x, y] = view.toPx(p);
      g.fillStyle = labels ? PALETTE[labels[i] % 10] : "#6cb4ff";
      g.fillRect(x - 1.5, y - 1.5, 3, 3);
    });
    g.globalAlpha = 1;
    ui.view = view; ui.mapBase = base;
    $("legend").innerHTML = labels ? PALETTE.map((c, k) => `<span><i style="background:${c}"></i>${k}</span>`).join("") : "";
    const d = m.d;
    $("map-note").textContent = (pts.length ? `${pts.length} points: ${m.map.source}. ` : "No points (a bundle without MNIST labels; `aetool web --images DIR` adds some). ")
      + (d === 2 ? "The map is the latent plane itself: hovering decodes z = (x, y)." :
        `The map is a plane through ${d}-D latent space (${m.map.plane.how}): hovering decodes mean + x·pc1 + y·pc2. Click to pin a point for the sliders.`);
    drawMap();
  }
  function drawMap() {
    const canvas = $("map"), g = canvas.getContext("2d");
    if (!ui.mapBase) return;
    g.drawImage(ui.mapBase, 0, 0);
    const mark = (z, colour, r) => {
      if (!z) return;
      const [x, y] = ui.view.toPx(ui.model.toPlane(z));
      g.strokeStyle = colour; g.lineWidth = 2; g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI); g.stroke();
    };
    mark(ui.selected && ui.selected.z, "#ffffff", 6);
    mark(ui.drawn && ui.drawn.z, "#ffdd33", 8);
  }

  const decodeMap = latest(async ([a, b]) => {
    const m = ui.model, z = m.fromPlane(a, b), [x] = await m.decode([z]);
    toCanvas($("map-decoded"), x, m.shape, m.image.range);
    $("map-at").textContent = `(${a.toFixed(2)}, ${b.toFixed(2)})`;
  });
  const decodeSliders = latest(async (z) => {
    const m = ui.model, [x] = await m.decode([z]);
    toCanvas($("slider-decoded"), x, m.shape, m.image.range);
  });

  function setupSliders(m) {
    const box = $("sliders"); box.innerHTML = "";
    ui.sliders = [];
    if (m.d > 16) { $("slider-note").textContent = `d=${m.d}: sliders are shown for d ≤ 16; pick a digit to see its decoding`; return; }
    $("slider-note").textContent = "each latent dimension, mean ± 4 sd of the density; they start at the selected digit's code";
    const { mean, cov } = m.density.moments();
    for (let i = 0; i < m.d; i++) {
      const sd = Math.sqrt(cov[i][i]), s = document.createElement("input"), out = document.createElement("span"), lab = document.createElement("span");
      Object.assign(s, { type: "range", min: mean[i] - 4 * sd, max: mean[i] + 4 * sd, step: (8 * sd) / 400, value: mean[i] });
      lab.textContent = `z${i + 1}`;
      s.addEventListener("input", () => { out.textContent = (+s.value).toFixed(2); decodeSliders(ui.sliders.map((t) => +t.value)); });
      out.textContent = mean[i].toFixed(2);
      box.append(lab, s, out);
      ui.sliders.push(s);
      s.out = out;
    }
  }
  function select(z, x) {
    ui.selected = { z, x };
    (ui.sliders || []).forEach((s, i) => { s.value = z[i]; s.out.textContent = z[i].toFixed(2); });
    decodeSliders(z);
    if (!ui.hovered) decodeMap(ui.model.toPlane(z));
    drawMap();
  }

  async function setupGallery(m) {
    const box = $("gallery"); box.innerHTML = "";
    const gal = m.map.gallery, bytes = Uint8Array.from(atob(gal.pixels_uint8_base64), (c) => c.charCodeAt(0));
    const [lo, hi] = m.image.range, xs = [];
    for (let i = 0; i < gal.n; i++) xs.push(Float32Array.from(bytes.subarray(i * m.pixels, (i + 1) * m.pixels), (v) => lo + (v / 255) * (hi - lo)));
    ui.gallery = xs;
    const zs = xs.length ? await m.encode(xs) : [];
    xs.forEach((x, i) => {
      const c = document.createElement("canvas"); c.width = m.shape[2]; c.height = m.shape[1];
      c.title = gal.names[i] || `picture ${i}`;
      toCanvas(c, x, m.shape, m.image.range);
      c.addEventListener("click", () => {
        box.querySelectorAll("canvas").forEach((e) => e.classList.remove("selected"));
        c.classList.add("selected");
        select(zs[i], x);
      });
      box.append(c);
    });
    if (xs.length) box.firstChild.click();
    else select(m.density.moments().mean, null);
    return zs;
  }

  // drawing
  function setupDrawing() {
    const canvas = $("draw"), g = canvas.getContext("2d", { willReadFrequently: true });
    const clear = () => { g.fillStyle = "#000"; g.fillRect(0, 0, canvas.width, canvas.height); };
    clear();
    let down = false, last = null;
    const pos = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
    canvas.addEventListener("pointerdown", (e) => { down = true; last = pos(e); canvas.setPointerCapture(e.pointerId); stroke(last, last); });
    canvas.addEventListener("pointermove", (e) => { if (!down) return; const p = pos(e); stroke(last, p); last = p; process(); });
    const up = () => { if (down) { down = false; process(); } };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    function stroke(a, b) {
      g.strokeStyle = "#fff"; g.lineWidth = 20; g.lineCap = "round"; g.lineJoin = "round";
      g.beginPath(); g.moveTo(a[0], a[1]); g.lineTo(b[0], b[1]); g.stroke();
    }
    const process = latest(async () => {
      const d = g.getImageData(0, 0, canvas.width, canvas.height);
      await analyse(d.data, d.width, d.height, "drawing");
    });
    $("clear").addEventListener("click", () => { clear(); ui.drawn = null; $("score").textContent = ""; drawMap(); });
    const open = async (file) => {
      if (!file) return;
      const bmp = await createImageBitmap(file);
      // a map bundle's photograph: shrunk (the browser's own resampling) to MAX_PAGE_SIDE, as the page runs no tiles
      const k = ui.model && ui.model.isMap ? Math.min(1, MAX_PAGE_SIDE / Math.max(bmp.width, bmp.height)) : 1;
      const ow = Math.max(1, Math.round(bmp.width * k)), oh = Math.max(1, Math.round(bmp.height * k));
      const off = document.createElement("canvas"); off.width = ow; off.height = oh;
      const og = off.getContext("2d"); og.drawImage(bmp, 0, 0, ow, oh);
      const d = og.getImageData(0, 0, ow, oh);
      clear();
      const s = Math.min(canvas.width / bmp.width, canvas.height / bmp.height);
      g.drawImage(bmp, (canvas.width - bmp.width * s) / 2, (canvas.height - bmp.height * s) / 2, bmp.width * s, bmp.height * s);
      await analyse(d.data, d.width, d.height, file.name);
    };
    $("file").addEventListener("change", (e) => open(e.target.files[0]).catch(report));
    canvas.addEventListener("dragover", (e) => { e.preventDefault(); canvas.classList.add("drop"); });
    canvas.addEventListener("dragleave", () => canvas.classList.remove("drop"));
    canvas.addEventListener("drop", (e) => { e.preventDefault(); canvas.classList.remove("drop"); open(e.dataTransfer.files[0]).catch(report); });
    ui.drawProcess = process;
  }
  /** A picture (RGBA bytes) through the bundle: its input, reconstruction, place on the map, score. */
  async function analyse(rgba, w, h, source) {
    if (ui.model.isMap) return analyseMap(rgba, w, h, source);
    const m = ui.model, { x, grey } = preprocess(rgba, w, h, m.image);
    const [z] = await m.encode([x]), [recon] = await m.decode([z]);
    toCanvas($("draw-input"), x, m.shape, m.image.range);
    toCanvas($("draw-recon"), recon, m.shape, m.image.range);
    const s = m.score(x, recon, z), el = $("score");
    el.textContent = `SSE ${s.sse.toFixed(2)}, NLL/dim ${s.nll.toFixed(2)}` +
      (s.score === null ? "; no anomaly calibration in this bundle"
        : s.threshold === null ? `; anomaly score ${s.score.toFixed(2)}: no threshold in this bundle, so no verdict (aetool calibrate --data DIR sets one)`
        : `; anomaly score ${s.score.toFixed(2)} (threshold ${s.threshold.toFixed(2)}): ${s.flagged ? "unusual" : "normal"}`);
    el.className = "small" + (s.flagged ? " flagged" : "");
    ui.drawn = { x, recon, z, score: s, grey, w, h, source };
    drawMap();
    return ui.drawn;
  }

  /** A map bundle: the picture at its own size (at most MAX_PAGE_SIDE a side) and its reconstruction. */
  async function analyseMap(rgba, w, h, source) {
    if (Math.max(w, h) > MAX_PAGE_SIDE) throw new Error(`a ${w}×${h} picture: the page takes at most ${MAX_PAGE_SIDE} px a side (aetool reconstruct takes any size)`);
    const m = ui.model, { x } = preprocess(rgba, w, h, m.image), shape = [m.image.channels, h, w];
    const { recon, z, zShape } = await m.reconstructPicture(x, h, w);
    for (const id of ["draw-input", "draw-recon"]) {
      const c = $(id), k = Math.min(1, 280 / Math.max(w, h));
      c.width = Math.max(1, Math.round(w * k)); c.height = Math.max(1, Math.round(h * k));
      toCanvas(c, id === "draw-input" ? x : recon, shape, m.image.range);
    }
    const s = m.scoreMap(x, recon, z, zShape, h, w), el = $("score");
    let mse = 0;
    for (let i = 0; i < x.length; i++) mse += (x[i] - recon[i]) ** 2;
    const psnr = 10 * Math.log10(x.length / Math.max(mse, 1e-30));
    el.textContent = `${w}×${h} at its own size, latent ${zShape.join("×")}: PSNR ${psnr.toFixed(2)} dB, anomaly map peak ${s.sse.toFixed(4)} SSE/pixel, NLL/dim ${s.nll.toFixed(2)}` +
      (s.score === null ? "" : s.threshold === null ? `; anomaly score ${s.score.toFixed(2)}, no threshold`
        : `; anomaly score ${s.score.toFixed(2)} (threshold ${s.threshold.toFixed(2)}): ${s.flagged ? "unusual" : "normal"}`);
    el.className = "small" + (s.flagged ? " flagged" : "");
    ui.drawn = { x, recon, z: Array.from(z), zShape, score: s, grey: null, w, h, source, psnr };
    return ui.drawn;
  }

  // interpolation
  async function setEnd(which, end) {
    if (!end) return;
    ui[which] = end;
    const m = ui.model;
    const [x] = end.x ? [end.x] : await m.decode([end.z]);
    toCanvas($(`interp-${which}`), x, m.shape, m.image.range);
    if (ui.a && ui.b) await interpolate(ui.a.z, ui.b.z, 16);
  }
  async function interpolate(za, zb, steps) {
    const m = ui.model, zs = Array.from({ length: steps }, (_, i) => { const t = i / (steps - 1); return za.map((v, j) => (1 - t) * v + t * zb[j]); });
    ui.frames = await m.decode(zs);
    grid($("interp-strip"), ui.frames, m.shape, m.image.range, steps, m.shape[1] > 32 ? 1 : 2);
    return ui.frames;
  }
  function animate() {
    let i = 0, dir = 1;
    setInterval(() => {
      const n = ui.frames.length;
      if (!ui.playing || n < 2) return;
      toCanvas($("interp-anim"), ui.frames[i], ui.model.shape, ui.model.image.range);
      if (i + dir < 0 || i + dir >= n) dir = -dir;
      i = Math.min(Math.max(i + dir, 0), n - 1);
    }, 125);
  }

  // sampling
  async function sample() {
    const m = ui.model, kind = $("density").value, seed = Math.max(0, Math.floor(+$("seed").value || 0));
    if (m.isMap) {
      const xs = await m.sampleMaps(8, seed, kind);
      grid($("samples"), xs, m.shape, m.image.range, 4, 1);
      return xs;
    }
    const zs = m.densities[kind].sample(16, seed), xs = await m.decode(zs);
    grid($("samples"), xs, m.shape, m.image.range, 8, m.shape[1] > 32 ? 1 : 2);
    return xs;
  }

  async function timeDecode(n) {
    const m = ui.model, z = m.density.moments().mean, times = [];
    const once = m.isMap ? () => m.sampleMaps(1, 0, m.meta.default_density) : () => m.decode([z]);
    for (let i = 0; i < n; i++) { const t = performance.now(); await once(); times.push(performance.now() - t); }
    times.sort((a, b) => a - b);
    return { median_ms: times[Math.floor(n / 2)], min_ms: times[0], max_ms: times[n - 1], n };
  }

  async function useBundle(name) {
    const entry = ui.site.bundles.find((b) => b.name === name) || ui.site.bundles[0];
    $("status").textContent = `loading ${entry.name}…`; $("status").className = "muted";
    const m = await Model.load(entry);
    ui.model = m; ui.selected = ui.drawn = ui.a = ui.b = null; ui.frames = [];
    $("bundle").value = entry.name;
    for (const id of ["map-panel", "slider-panel", "interp-panel"]) $(id).hidden = m.isMap;  // they need one code per picture
    $("info").textContent = `${m.meta.family}, d=${m.d}, ` + (m.isMap ? `latent map, f=${m.meta.latent.factor}, any picture size` : `image ${m.shape.join("×")}`) +
      `, ${m.image.preprocessing}, density ${m.meta.default_density}` +
      (m.meta.anomaly && typeof m.meta.anomaly.threshold === "number" ? ", anomaly threshold set" : ", no anomaly threshold");
    $("draw-note").textContent = m.isMap
      ? `a picture is reconstructed at its own size: padded by reflection to a multiple of ${m.meta.latent.multiple}, encoded, decoded and cropped back; ` +
        `the page shrinks a photograph to at most ${MAX_PAGE_SIDE} px a side first (aetool reconstruct takes any size, in tiles)`
      : m.image.preprocessing === "mnist_digit"
      ? "draw white on black; the drawing is prepared as aetool prepares a picture of a digit: ink cropped, fitted in 20×20 (LANCZOS), centred by mass in 28×28"
      : `a picture is ${m.image.preprocessing === "resize_crop" ? "centre-cropped to a square" : "fitted inside the square on black"} and resized to ${m.shape[2]}×${m.shape[1]}, as aetool reads pictures`;
    const kinds = Object.keys(m.densities);
    $("density").innerHTML = kinds.map((k) => `<option value="${k}"${k === m.meta.default_density ? " selected" : ""}>${k.replace("_", " ")}</option>`).join("");
    $("sample-note").textContent = m.isMap
      ? `each position's code drawn on its own from latent.json's density (seeded PRNG) and the ${m.shape[2]}×${m.shape[1]} map decoded: textures, not scenes`
      : "z drawn in this page from latent.json's density (seeded PRNG), then decoded";
    if (m.isMap) {
      $("draw").getContext("2d").fillRect(0, 0, 280, 280);
      await sample();
      const t = await timeDecode(3);
      $("status").textContent = `sample ${t.median_ms.toFixed(1)} ms (one ${m.shape[2]}×${m.shape[1]} map, wasm)`;
      return m;
    }
    setupMap(m);
    setupSliders(m);
    const zs = await setupGallery(m);
    $("draw").getContext("2d").fillRect(0, 0, 280, 280);
    if (zs.length >= 2) { await setEnd("a", { z: zs[0], x: ui.gallery[0] }); await setEnd("b", { z: zs[zs.length - 1], x: ui.gallery[zs.length - 1] }); }
    else { const s = m.density.sample(2, 1); await setEnd("a", { z: s[0] }); await setEnd("b", { z: s[1] }); }
    await sample();
    const t = await timeDecode(5);
    $("status").textContent = `decode ${t.median_ms.toFixed(1)} ms (batch 1, wasm)`;
    return m;
  }

  async function main() {
    const site = await (await fetch("site.json")).json();
    ui.site = site;
    const base = new URL(site.runtime.url, location.href).href;
    await new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = base + "ort.wasm.min.js";
      s.onload = resolve;
      s.onerror = () => reject(new Error(`cannot load onnxruntime-web from ${s.src}`));
      document.head.append(s);
    });
    ort.env.wasm.wasmPaths = base;
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain static server does not give
    ort.env.logLevel = "error";
    $("ort-version").textContent = `onnxruntime-web ${site.runtime.version}`;
    $("bundle").innerHTML = site.bundles.map((b) => `<option>${b.name}</option>`).join("");
    $("bundle").addEventListener("change", (e) => { window.aetool.ready = useBundle(e.target.value).catch(report); });
    setupDrawing();
    $("map").addEventListener("mousemove", (e) => { ui.hovered = true; if (ui.model) decodeMap(ui.view.fromPx(e.offsetX, e.offsetY)); });
    $("map").addEventListener("mouseleave", () => { ui.hovered = false; });
    $("map").addEventListener("click", (e) => { if (ui.model) { const [a, b] = ui.view.fromPx(e.offsetX, e.offsetY); decodeMap([a, b]); select(ui.model.fromPlane(a, b), null); } });
    $("draw-to-a").addEventListener("click", () => setEnd("a", ui.drawn).catch(report));
    $("draw-to-b").addEventListener("click", () => setEnd("b", ui.drawn).catch(report));
    $("sel-to-a").addEventListener("click", () => setEnd("a", ui.selected).catch(report));
    $("sel-to-b").addEventListener("click", () => setEnd("b", ui.selected).catch(report));
    $("interp-play").addEventListener("click", () => { ui.playing = !ui.playing; });
    $("sample").addEventListener("click", () => sample().catch(report));
    animate();
    const wanted = new URLSearchParams(location.search).get("bundle");
    return useBundle(wanted || site.bundles[0].name);
  }

  // ------------------------------------------------------------------ the API the tests (and curious users) call
  const plain = (a) => Array.from(a);
  window.aetool = {
    errors,
    ready: null,
    use: (name) => (window.aetool.ready = useBundle(name)),
    meta: () => ui.model.meta,
    map: () => ui.model.map,
    decode: async (z) => plain((await ui.model.decode([z]))[0]),
    decodeMany: async (zs) => (await ui.model.decode(zs)).map(plain),
    encode: async (x) => (await ui.model.encode([Float32Array.from(x)]))[0],
    sample: (n, seed, kind) => ui.model.densities[kind || ui.model.meta.default_density].sample(n, seed),
    logProb: (z, kind) => ui.model.densities[kind || ui.model.meta.default_density].logProb(z),
    preprocessDigit: (grey, w, h) => plain(w === 28 && h === 28 ? grey : mnistNormalise(Float32Array.from(grey), w, h)),
    analyse: async (rgba, w, h) => { const r = await analyse(Uint8ClampedArray.from(rgba), w, h, "api"); return { x: plain(r.x), recon: plain(r.recon), z: r.z, score: r.score, zShape: r.zShape }; },
    isMap: () => ui.model.isMap,
    hidden: () => ["map-panel", "slider-panel", "interp-panel"].filter((id) => $(id).hidden),
    graphShapes: () => graphShapes(ui.model.meta),
    drawn: () => ui.drawn && { x: plain(ui.drawn.x), recon: plain(ui.drawn.recon), z: ui.drawn.z, score: ui.drawn.score,
      grey: ui.drawn.grey && plain(ui.drawn.grey), w: ui.drawn.w, h: ui.drawn.h, source: ui.drawn.source },
    /** true while a drawing is still being analysed (the tests wait for false) */
    drawing: () => ui.drawProcess.busy(),
    interpolate: async (za, zb, steps) => (await interpolate(za, zb, steps || 16)).map(plain),
    timeDecode,
  };
  window.aetool.ready = main().catch((e) => { report(e); throw e; });
})();

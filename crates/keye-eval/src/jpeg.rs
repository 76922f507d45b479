//! A baseline JPEG encoder that reproduces what Pillow's `image.save("x.jpg")` writes (libjpeg
//! defaults at quality 75): the same quantised coefficients, hence the same decoded pixels.
//!
//! VLMEvalKit materialises base64 images as such JPEGs before the model reads them, so the
//! pixels Keye is evaluated on depend on libjpeg's exact arithmetic: the fixed-point RGB→YCbCr
//! conversion, 2×2 chroma averaging with alternating rounding bias, edge replication, dummy
//! blocks at the right and bottom of the last MCU, the integer ("islow") DCT and rounding
//! division by the quantisation table.

/// JPEG standard (Annex K) luminance and chrominance quantisation tables, natural order.
const LUMA_QUANT: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_QUANT: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];

/// Position in natural (row-major) order of the k-th coefficient in zig-zag order.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Annex K Huffman tables: code counts per length 1..16, then symbols.
const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
const AC_LUMA_VALUES: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
    0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5,
    0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2,
    0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];
const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
const AC_CHROMA_VALUES: [u8; 162] = [
    0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71,
    0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33, 0x52, 0xF0,
    0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19, 0x1A, 0x26,
    0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
    0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5,
    0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3,
    0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA,
    0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8,
    0xF9, 0xFA,
];

/// Pixels to encode: 8-bit grayscale or interleaved RGB.
pub enum Pixels<'a> {
    Gray(&'a [u8]),
    Rgb(&'a [u8]),
}

/// Encodes like libjpeg with `jpeg_set_quality(quality, TRUE)` and default settings: 4:2:0 for
/// colour, one component for grayscale, standard Huffman tables, no restart markers.
pub fn encode(pixels: Pixels, width: u16, height: u16, quality: u8) -> Vec<u8> {
    let (w, h) = (usize::from(width), usize::from(height));
    let luma_table = scaled_table(&LUMA_QUANT, quality);
    let chroma_table = scaled_table(&CHROMA_QUANT, quality);
    let mut out = Vec::with_capacity(w * h / 4 + 1024);
    write_headers(
        &mut out,
        width,
        height,
        matches!(pixels, Pixels::Rgb(_)),
        &luma_table,
        &chroma_table,
    );
    let mut bits = BitWriter::new(&mut out);
    let luma = HuffmanCodes::new(&DC_LUMA_BITS, &DC_VALUES, &AC_LUMA_BITS, &AC_LUMA_VALUES);
    match pixels {
        Pixels::Gray(gray) => {
            // One component: MCU = one block, samples edge-replicated to whole blocks.
            let plane = Plane::padded(gray.to_vec(), w, h, w.div_ceil(8) * 8, h.div_ceil(8) * 8);
            let mut previous_dc = 0;
            for by in 0..h.div_ceil(8) {
                for bx in 0..w.div_ceil(8) {
                    let block = quantise(&plane.block(bx, by), &luma_table);
                    bits.block(&block, &mut previous_dc, &luma);
                }
            }
        }
        Pixels::Rgb(rgb) => {
            let chroma = HuffmanCodes::new(
                &DC_CHROMA_BITS,
                &DC_VALUES,
                &AC_CHROMA_BITS,
                &AC_CHROMA_VALUES,
            );
            let (mcu_cols, mcu_rows) = (w.div_ceil(16), h.div_ceil(16));
            let (padded_w, padded_h) = (mcu_cols * 16, mcu_rows * 16);
            let (y, cb, cr) = ycc_planes(rgb);
            let y = Plane::padded(y, w, h, w.div_ceil(8) * 8, padded_h);
            // libjpeg pads full-resolution rows only to an even count before averaging, then
            // repeats the last averaged row down to the MCU boundary.
            let chroma_plane = |samples| {
                Plane::padded(samples, w, h, padded_w, h.next_multiple_of(2))
                    .downsample_2x2()
                    .repeat_last_row(mcu_rows * 8)
            };
            let (cb, cr) = (chroma_plane(cb), chroma_plane(cr));
            let (luma_cols, luma_rows) = (w.div_ceil(8), h.div_ceil(8));
            let mut dc = [0i32; 3];
            for my in 0..mcu_rows {
                for mx in 0..mcu_cols {
                    let mut luma_blocks = [[0i32; 64]; 4];
                    for i in 0..4 {
                        let (bx, by) = (mx * 2 + i % 2, my * 2 + i / 2);
                        luma_blocks[i] = if by >= luma_rows {
                            // A dummy row: both blocks take the DC of the block emitted just
                            // before the row (the top-right one), no AC.
                            dummy(luma_blocks[1][0])
                        } else if bx >= luma_cols {
                            // A dummy column: DC of the block to the left, no AC.
                            dummy(luma_blocks[i - 1][0])
                        } else {
                            quantise(&y.block(bx, by), &luma_table)
                        };
                    }
                    for block in &luma_blocks {
                        bits.block(block, &mut dc[0], &luma);
                    }
                    bits.block(
                        &quantise(&cb.block(mx, my), &chroma_table),
                        &mut dc[1],
                        &chroma,
                    );
                    bits.block(
                        &quantise(&cr.block(mx, my), &chroma_table),
                        &mut dc[2],
                        &chroma,
                    );
                }
            }
        }
    }
    bits.finish();
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

fn dummy(dc: i32) -> [i32; 64] {
    let mut block = [0; 64];
    block[0] = dc;
    block
}

/// `jpeg_quality_scaling` + `jpeg_add_quant_table` with baseline clamping.
fn scaled_table(base: &[u16; 64], quality: u8) -> [u16; 64] {
    let quality = u32::from(quality.clamp(1, 100));
    let scale = if quality < 50 {
        5000 / quality
    } else {
        200 - quality * 2
    };
    base.map(|v| ((u32::from(v) * scale + 50) / 100).clamp(1, 255) as u16)
}

/// libjpeg's `rgb_ycc_convert`: 16-bit fixed point, Y rounded half up, Cb/Cr with a 0.5 − ε
/// fudge so that 255 cannot overflow.
fn ycc_planes(rgb: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    const HALF: i32 = 1 << 15;
    const OFFSET: i32 = 128 << 16;
    let count = rgb.len() / 3;
    let (mut y, mut cb, mut cr) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for pixel in rgb.chunks_exact(3) {
        let (r, g, b) = (
            i32::from(pixel[0]),
            i32::from(pixel[1]),
            i32::from(pixel[2]),
        );
        y.push(((19595 * r + 38470 * g + 7471 * b + HALF) >> 16) as u8);
        cb.push(((-11059 * r - 21709 * g + 32768 * b + OFFSET + HALF - 1) >> 16) as u8);
        cr.push(((32768 * r - 27439 * g - 5329 * b + OFFSET + HALF - 1) >> 16) as u8);
    }
    (y, cb, cr)
}

/// One component's samples, padded by replicating the last column and row.
struct Plane {
    samples: Vec<u8>,
    width: usize,
}

impl Plane {
    fn padded(
        samples: Vec<u8>,
        width: usize,
        height: usize,
        padded_width: usize,
        padded_height: usize,
    ) -> Plane {
        let mut out = Vec::with_capacity(padded_width * padded_height);
        for row in 0..padded_height {
            let source = &samples[row.min(height - 1) * width..][..width];
            out.extend_from_slice(source);
            out.resize(out.len() + (padded_width - width), source[width - 1]);
        }
        Plane {
            samples: out,
            width: padded_width,
        }
    }

    fn repeat_last_row(mut self, rows: usize) -> Plane {
        let last = self.samples.len() - self.width;
        while self.samples.len() < rows * self.width {
            self.samples.extend_from_within(last..last + self.width);
        }
        self
    }

    /// `h2v2_downsample`: 2×2 averages with a bias alternating 1, 2 along each row.
    fn downsample_2x2(&self) -> Plane {
        let (width, height) = (self.width / 2, self.samples.len() / self.width / 2);
        let mut out = Vec::with_capacity(width * height);
        for row in 0..height {
            let top = &self.samples[2 * row * self.width..][..self.width];
            let bottom = &self.samples[(2 * row + 1) * self.width..][..self.width];
            for col in 0..width {
                let sum = u32::from(top[2 * col])
                    + u32::from(top[2 * col + 1])
                    + u32::from(bottom[2 * col])
                    + u32::from(bottom[2 * col + 1]);
                let bias = if col % 2 == 0 { 1 } else { 2 };
                out.push(((sum + bias) >> 2) as u8);
            }
        }
        Plane {
            samples: out,
            width,
        }
    }

    /// The 8×8 block at block coordinates, level-shifted by 128.
    fn block(&self, bx: usize, by: usize) -> [i32; 64] {
        let mut block = [0i32; 64];
        for (r, chunk) in block.chunks_exact_mut(8).enumerate() {
            let row = &self.samples[(by * 8 + r) * self.width + bx * 8..][..8];
            for (value, &sample) in chunk.iter_mut().zip(row) {
                *value = i32::from(sample) - 128;
            }
        }
        block
    }
}

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i32 = 2446;
const FIX_0_390180644: i32 = 3196;
const FIX_0_541196100: i32 = 4433;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_175875602: i32 = 9633;
const FIX_1_501321110: i32 = 12299;
const FIX_1_847759065: i32 = 15137;
const FIX_1_961570560: i32 = 16069;
const FIX_2_053119869: i32 = 16819;
const FIX_2_562915447: i32 = 20995;
const FIX_3_072711026: i32 = 25172;

fn descale(x: i32, n: u32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's `jpeg_fdct_islow`; the output is scaled up by 8.
fn forward_dct(block: &mut [i32; 64]) {
    for pass in 0..2 {
        for i in 0..8 {
            // Pass 0 works on rows, pass 1 on columns.
            let index = |k: usize| if pass == 0 { i * 8 + k } else { k * 8 + i };
            let d: [i32; 8] = std::array::from_fn(|k| block[index(k)]);
            let (tmp0, tmp7) = (d[0] + d[7], d[0] - d[7]);
            let (tmp1, tmp6) = (d[1] + d[6], d[1] - d[6]);
            let (tmp2, tmp5) = (d[2] + d[5], d[2] - d[5]);
            let (tmp3, tmp4) = (d[3] + d[4], d[3] - d[4]);
            let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
            let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
            let (even_shift, odd_shift) = if pass == 0 {
                (None, CONST_BITS - PASS1_BITS)
            } else {
                (Some(PASS1_BITS), CONST_BITS + PASS1_BITS)
            };
            let even = |x: i32| match even_shift {
                None => x << PASS1_BITS,
                Some(n) => descale(x, n),
            };
            block[index(0)] = even(tmp10 + tmp11);
            block[index(4)] = even(tmp10 - tmp11);
            let z1 = (tmp12 + tmp13) * FIX_0_541196100;
            block[index(2)] = descale(z1 + tmp13 * FIX_0_765366865, odd_shift);
            block[index(6)] = descale(z1 - tmp12 * FIX_1_847759065, odd_shift);
            let (z1, z2, z3, z4) = (tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7);
            let z5 = (z3 + z4) * FIX_1_175875602;
            let (tmp4, tmp5) = (tmp4 * FIX_0_298631336, tmp5 * FIX_2_053119869);
            let (tmp6, tmp7) = (tmp6 * FIX_3_072711026, tmp7 * FIX_1_501321110);
            let (z1, z2) = (-z1 * FIX_0_899976223, -z2 * FIX_2_562915447);
            let (z3, z4) = (-z3 * FIX_1_961570560 + z5, -z4 * FIX_0_390180644 + z5);
            block[index(7)] = descale(tmp4 + z1 + z3, odd_shift);
            block[index(5)] = descale(tmp5 + z2 + z4, odd_shift);
            block[index(3)] = descale(tmp6 + z2 + z3, odd_shift);
            block[index(1)] = descale(tmp7 + z1 + z4, odd_shift);
        }
    }
}

/// DCT then rounding division by the table (scaled by 8 to undo the DCT's gain), zig-zag order.
fn quantise(samples: &[i32; 64], table: &[u16; 64]) -> [i32; 64] {
    let mut coefficients = *samples;
    forward_dct(&mut coefficients);
    let mut out = [0i32; 64];
    for (k, &natural) in ZIGZAG.iter().enumerate() {
        let divisor = i32::from(table[natural]) << 3;
        let value = coefficients[natural];
        let magnitude = (value.abs() + (divisor >> 1)) / divisor;
        out[k] = if value < 0 { -magnitude } else { magnitude };
    }
    out
}

/// Code and length per symbol of one DC and one AC table.
struct HuffmanCodes {
    dc: [(u16, u8); 256],
    ac: [(u16, u8); 256],
}

impl HuffmanCodes {
    fn new(
        dc_bits: &[u8; 16],
        dc_values: &[u8],
        ac_bits: &[u8; 16],
        ac_values: &[u8],
    ) -> HuffmanCodes {
        HuffmanCodes {
            dc: canonical_codes(dc_bits, dc_values),
            ac: canonical_codes(ac_bits, ac_values),
        }
    }
}

fn canonical_codes(bits: &[u8; 16], values: &[u8]) -> [(u16, u8); 256] {
    let mut codes = [(0u16, 0u8); 256];
    let mut code = 0u16;
    let mut symbols = values.iter();
    for (length, &count) in bits.iter().enumerate() {
        for _ in 0..count {
            let symbol = *symbols.next().expect("table counts match its symbols");
            codes[usize::from(symbol)] = (code, length as u8 + 1);
            code += 1;
        }
        code <<= 1;
    }
    codes
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    buffer: u32,
    count: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> BitWriter<'a> {
        BitWriter {
            out,
            buffer: 0,
            count: 0,
        }
    }

    fn put(&mut self, value: u16, length: u8) {
        let length = u32::from(length);
        self.buffer = (self.buffer << length) | (u32::from(value) & ((1 << length) - 1));
        self.count += length;
        while self.count >= 8 {
            let byte = (self.buffer >> (self.count - 8)) as u8;
            self.out.push(byte);
            if byte == 0xFF {
                self.out.push(0);
            }
            self.count -= 8;
        }
        self.buffer &= (1 << self.count) - 1;
    }

    /// Pads the last byte with ones, as libjpeg does.
    fn finish(&mut self) {
        if self.count > 0 {
            let pad = 8 - self.count;
            self.put((1 << pad) - 1, pad as u8);
        }
    }

    /// One block in zig-zag order: DC difference, then AC run lengths with ZRL and EOB.
    fn block(&mut self, block: &[i32; 64], previous_dc: &mut i32, codes: &HuffmanCodes) {
        let diff = block[0] - *previous_dc;
        *previous_dc = block[0];
        let (size, bits) = magnitude(diff);
        let (code, length) = codes.dc[usize::from(size)];
        self.put(code, length);
        self.put(bits, size);
        let mut run = 0;
        for &value in &block[1..] {
            if value == 0 {
                run += 1;
                continue;
            }
            while run > 15 {
                let (code, length) = codes.ac[0xF0];
                self.put(code, length);
                run -= 16;
            }
            let (size, bits) = magnitude(value);
            let (code, length) = codes.ac[(run << 4) | usize::from(size)];
            self.put(code, length);
            self.put(bits, size);
            run = 0;
        }
        if run > 0 {
            let (code, length) = codes.ac[0x00];
            self.put(code, length);
        }
    }
}

/// The size category of a value and its appended bits (one's complement for negatives).
fn magnitude(value: i32) -> (u8, u16) {
    let size = (32 - value.unsigned_abs().leading_zeros()) as u8;
    let bits = if value < 0 { value - 1 } else { value };
    (size, (bits as u32 & ((1u32 << size) - 1)) as u16)
}

fn write_headers(
    out: &mut Vec<u8>,
    width: u16,
    height: u16,
    colour: bool,
    luma: &[u16; 64],
    chroma: &[u16; 64],
) {
    out.extend_from_slice(&[0xFF, 0xD8]);
    // JFIF 1.01, no density units, 1:1 aspect, no thumbnail (libjpeg's defaults).
    out.extend_from_slice(&[
        0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    ]);
    let tables: &[&[u16; 64]] = if colour { &[luma, chroma] } else { &[luma] };
    for (id, table) in tables.iter().enumerate() {
        out.extend_from_slice(&[0xFF, 0xDB, 0, 67, id as u8]);
        out.extend(ZIGZAG.iter().map(|&natural| table[natural] as u8));
    }
    let components: &[(u8, u8, u8)] = if colour {
        &[(1, 0x22, 0), (2, 0x11, 1), (3, 0x11, 1)]
    } else {
        &[(1, 0x11, 0)]
    };
    let sof_length = 8 + 3 * components.len() as u16;
    out.extend_from_slice(&[0xFF, 0xC0]);
    out.extend_from_slice(&sof_length.to_be_bytes());
    out.push(8);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.push(components.len() as u8);
    for &(id, sampling, table) in components {
        out.extend_from_slice(&[id, sampling, table]);
    }
    let mut huffman = |class_and_id: u8, bits: &[u8; 16], values: &[u8]| {
        out.extend_from_slice(&[0xFF, 0xC4]);
        out.extend_from_slice(&(3 + 16 + values.len() as u16).to_be_bytes());
        out.push(class_and_id);
        out.extend_from_slice(bits);
        out.extend_from_slice(values);
    };
    huffman(0x00, &DC_LUMA_BITS, &DC_VALUES);
    huffman(0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES);
    if colour {
        huffman(0x01, &DC_CHROMA_BITS, &DC_VALUES);
        huffman(0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES);
    }
    let scan: &[(u8, u8)] = if colour {
        &[(1, 0x00), (2, 0x11), (3, 0x11)]
    } else {
        &[(1, 0x00)]
    };
    out.extend_from_slice(&[0xFF, 0xDA]);
    out.extend_from_slice(&(6 + 2 * scan.len() as u16).to_be_bytes());
    out.push(scan.len() as u8);
    for &(id, tables) in scan {
        out.extend_from_slice(&[id, tables]);
    }
    out.extend_from_slice(&[0, 63, 0]);
}

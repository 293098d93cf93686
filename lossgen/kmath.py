"""Vectorizable exp, expm1, log, log1p, tanh and sinh for numba kernels, float64 and float32, and
exp combined with a data value: scaled_exp(z, y) = y*exp(z), scaled_expm1(z, y) = y*exp(z) - 1
and exp_minus(z, y) = exp(z) - y.

Numba lowers math.exp, math.log1p, ... to scalar libm calls, and a loop that calls a function
cannot be vectorized: kernels spent most of their time in libm, at 8-13x (float64) and 16-24x
(float32) the memory-stream limit. These functions are branch-free arithmetic on bits and floats
that LLVM inlines into the caller's loop and vectorizes (AVX2: 4 doubles or 8 floats at a time),
with libm's special values and an accuracy of 1 ulp in float64 and 0.51 ulp in float32.

Use, in any @njit code (lossgen's generated kernels included)::

    from lossgen.kmath import exp_f64, log1p_f32

    y = exp_f64(x)          # float64 in, float64 out
    z = log1p_f32(v)        # float32 in, float32 out

KERNEL_MATH maps (name, dtype), e.g. ("exp", "float64"), to the function's name ("exp_f64").
Arguments are converted to the function's dtype first, so an int or a float of the other width
works too (as with libm, a float64 argument of a float32 function is rounded to float32).

Algorithms (float64)
--------------------
exp, expm1
    x = k ln2 + r with |r| <= ln2/2. k comes from x log2(e) + 1.5*2^52, which leaves
    round(x log2 e) in the low mantissa bits (no float-to-int instruction, which AVX2 lacks for
    64-bit lanes); ln2 is split in two (Cody-Waite) and the reduction's own rounding error is
    carried along. expm1(r) = r + r^2/2 + r^3 Q(r) with Q a degree-9 minimax polynomial (Remez,
    relative error 2^-61.7; evaluated by Estrin's scheme, whose shorter dependency chain lets more
    loop iterations overlap). Then exp x = 2^k (1 + expm1 r) and
    expm1 x = 2^k ((1 - 2^-k) + expm1 r), summed with Fast2Sum so that only the last addition
    rounds. 2^k is applied as two multiplications by powers of two built from exponent bits, so
    overflow to inf and gradual underflow to subnormals are each rounded once, by the hardware.
log, log1p
    fdlibm's method: x = 2^k m with m in [sqrt(1/2), sqrt 2) read off the bits (subnormals scaled
    by 2^54 first), f = m - 1, s = f/(2 + f), log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)) with R
    of degree 7 (minimax, 2^-59.5). log1p takes u = 1 + x, keeps u's rounding error as a
    correction error/u (1/u from s: no second division), and uses f = x exactly where k = 0.
tanh
    t = expm1(2|x|) as a double-double; tanh = t/(t + 2) below |x| = 0.55 and 1 - 2/(t + 2)
    above (no cancellation either side), one division whose exact remainder comes from an FMA,
    and the sign copied from x. Saturates to +-1 from |x| = 19.06.
sinh
    t = expm1(|x|) kept as v 2^k, so that sinh is finite up to 710.4758 although e^x overflows at
    709.7827: 2 sinh = t + t/(t + 1) = 2^k (v + 2^-k v/(v + 2^-k)), the division again with its
    FMA remainder.

scaled_exp, scaled_expm1, exp_minus
    exp(z) as a double-double (value + low) 2^k (about 2^-57 relative) and y = m 2^j read off
    its bits: y*exp(z) = (m value + m low) 2^(k + j) with the product exact by FMA, so it is
    finite wherever the result is, although exp(z) alone overflows; the subtraction of 1 or of
    y is done at the common scale, where it is exact near cancellation (Sterbenz). Error: 1 ulp
    of the result plus 2^-55 of the larger term, against the 2^-53 |z| that the forms through
    z + log(y) had. One range reduction, which LLVM shares with an exp of the same z.

float32
-------
The float32 functions compute in float64 with shorter polynomials (Q of degree 4, 2^-31.2; R of
degree 2, 2^-30.2) and round once to float32 at the end, which also makes float32 overflow,
subnormal results and underflow exactly right. Results are correctly rounded except within
2^-6 ulp of a tie (worst measured 0.512 ulp). Measured alternative: native float32 arithmetic
(8 lanes per instruction instead of 4, int32 bit operations through intrinsics, since numba
widens int32 arithmetic to int64) was 1.0-1.4x as fast in cache, no faster at n = 10^7 (memory
bound) and less accurate (0.63-0.65 ulp), so the float64 route is kept: one set of algorithms.

Special cases
-------------
No early returns: NaN flows through the arithmetic (clamps are selects that a NaN fails), and
+-inf, +-0 (sign kept where C99 keeps it: expm1, log1p, tanh, sinh of -0.0 are -0.0), log(0),
log of negatives, log1p(-1), overflow and saturation are folded in with selects at the end.
Subnormal inputs and outputs are handled exactly as above.

Compilation
-----------
Every function here is @njit(fastmath={"contract"}, error_model="numpy", forceinline=True,
cache=True):

* forceinline marks the LLVM function alwaysinline. LLVM inlines it into the caller, and the
  inlined instructions keep kmath's fast-math flags whatever the caller's are: a caller with
  fastmath={"contract", "nsz"} (lossgen's kernels), or even fastmath=True, cannot break the
  error-compensation steps or the special values (tested). Without it LLVM's cost model refuses
  to inline tanh and sinh and their loops stay scalar. numba's inline="always" is not used: it
  re-lowers the body inside the caller, with the caller's flags, and compiles slower.
* "contract" lets LLVM fuse a*b + c into FMA instructions (polynomials, Cody-Waite). Never nnan
  or ninf (special cases are computed, not assumed away), never reassoc (it would fold the
  1.5*2^52 rounding trick and the Fast2Sum/TwoSum error terms), never nsz, arcp or afn.
  Where an exact product or remainder matters (tanh, sinh) llvm.fma is called explicitly: one
  instruction on CPUs with FMA, a correct but slow libm call on those without. Results on CPUs
  without FMA may differ in the last bit; the accuracy bounds hold either way.
* error_model="numpy": divisions follow IEEE (no zero checks, which would be branches).
* cache=True: a new process loads the compiled helpers instead of compiling them again.

A function called on its own returns the same bits as when it is inlined into a vectorized loop
(tested). Accuracy tables, the method and the speed-ups: docs/kmath.md and
benchmarks/kmath_accuracy.py.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# ---------------------------------------------------------------------------------------------
# Bit reinterpretation and branch-free select. These are single LLVM instructions (bitcast,
# select), so they vectorize; libm ldexp/frexp would be opaque calls that stop the vectorizer.


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, bits):
    """The float64 whose IEEE-754 bits are the int64 `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _select(typingctx, condition, if_true, if_false):
    """`if_true if condition else if_false` as one LLVM select: both sides are always computed."""
    chosen = types.unliteral(if_true)
    if chosen != types.unliteral(if_false) or not isinstance(chosen, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])

    return chosen(types.boolean, chosen, chosen), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a*b + c rounded once (llvm.fma: one instruction where the CPU has FMA, a libm call where
    it has not, so results never depend on the hardware)."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, a, a), codegen


# Each function is its own LLVM function marked alwaysinline: LLVM inlines it into the caller's
# loop, where its instructions keep these flags whatever the caller's (see the module docstring).
_kernel = njit(fastmath={"contract"}, error_model="numpy", forceinline=True, cache=True)

# ---------------------------------------------------------------------------------------------
# float64

_LOG2E = 1.4426950408889634
# ln2 = _LN2_HI + _LN2_LO (error 1e-26); _LN2_HI has 21 trailing zero bits, so k*_LN2_HI is exact.
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
# x*log2e + 1.5*2^52 rounds to an integer in the low mantissa bits: round-to-nearest without cvt.
_SHIFTER = float.fromhex("0x1.8p52")
_SHIFTER_BITS = 0x4338000000000000
_EXP_BIAS = 1023
_MANTISSA_BITS = 52
_MANTISSA_MASK = 0x000FFFFFFFFFFFFF
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_TWO_POW_54 = float.fromhex("0x1p54")
_SMALLEST_NORMAL = float.fromhex("0x1p-1022")

# (expm1(r) - r - r^2/2) / r^3 on |r| <= ln2/2: minimax, weight r^2 (relative error of expm1(r)),
# 2^-61.7 (Remez exchange in mpmath, 60 digits: docs/kmath.md has the code).
_Q0 = 0.16666666666666677
_Q1 = 0.04166666666666669
_Q2 = 0.008333333333321695
_Q3 = 0.0013888888888870226
_Q4 = 0.00019841269885985613
_Q5 = 2.480158735595016e-05
_Q6 = 2.755724433635593e-06
_Q7 = 2.755724571641223e-07
_Q8 = 2.51089960503852e-08
_Q9 = 2.0923717597026115e-09

# (2 atanh(s) - 2s) / s^3 as a polynomial in z = s^2 on z <= (3 - 2 sqrt 2)^2: minimax, weight z,
# 2^-59.5 (the same polynomial as fdlibm's Lg1..Lg7).
_L0 = 0.6666666666666734
_L1 = 0.3999999999941432
_L2 = 0.28571428742474847
_L3 = 0.22222198563489717
_L4 = 0.18183564866426818
_L5 = 0.15314035841749965
_L6 = 0.14796105377200838


@_kernel
def _pow2_f64(k):
    """2**k for -1022 <= k <= 1023, built from its exponent bits."""
    return _bits_f64((k + _EXP_BIAS) << _MANTISSA_BITS)


@_kernel
def _scale_f64(value, k):
    """value * 2**k in two exact steps so that k down to -1100 and up to 1100 neither wraps the
    exponent field nor double-rounds: the second multiply rounds once into subnormal or inf."""
    half = k >> 1
    return (value * _pow2_f64(half)) * _pow2_f64(k - half)


@_kernel
def _int_to_f64(k):
    """float(k) for |k| < 2^51 without cvtsi2sd (AVX2 has no packed int64 -> double)."""
    return _bits_f64(k + _SHIFTER_BITS) - _SHIFTER


@_kernel
def _expm1_reduced_f64(x):
    """Split x = k ln2 + r + c with |r| <= ln2/2 (c the tiny rounding error of r) and return
    (k, r, w) where r + w = expm1(r + c) to about 2^-60 relative."""
    scaled = x * _LOG2E + _SHIFTER
    k = _f64_bits(scaled) - _SHIFTER_BITS
    kf = scaled - _SHIFTER
    high = x - kf * _LN2_HI  # exact: kf*_LN2_HI is exact and cancels x's leading bits
    r = high - kf * _LN2_LO
    c = (high - r) - kf * _LN2_LO
    # Estrin's scheme: a shallower dependency chain than Horner, so more loop iterations overlap.
    r2 = r * r
    r4 = r2 * r2
    q = ((_Q0 + r * _Q1) + r2 * (_Q2 + r * _Q3)) + r4 * (
        ((_Q4 + r * _Q5) + r2 * (_Q6 + r * _Q7)) + r4 * (_Q8 + r * _Q9)
    )
    # expm1(r + c) = expm1(r) + c*exp(r), and exp(r) = 1 + r to the precision c needs.
    w = r2 * (0.5 + r * q) + (c + c * r)
    return k, r, w


@_kernel
def _add_to_reduced_f64(one, one_low, r, w):
    """(value, low): value = (one + one_low) + r + w rounded once, low its rounding error (to
    about 2^-60 relative), for |r| <= ln2/2, |w| <= r^2, |one_low| <= ulp(one) and one = 0 or
    |one| >= 1/2.

    Fast2Sum: one + r rounds, and its rounding error is recovered exactly, so only the final
    addition rounds; the second Fast2Sum (valid since |head| >= |tail|) recovers that."""
    head = one + r
    tail = ((one - head) + r) + (w + one_low)
    value = head + tail
    return value, (head - value) + tail


@_kernel
def exp_f64(x):
    """exp(x) for float64, within 1 ulp; overflows to inf above 709.78, subnormal below -708.4."""
    # The same steps as the exp-with-data functions below (clamp, reduction, 1 + r + w): where a
    # kernel calls both on one argument (Poisson: exp(p) and exp(p) - y), LLVM computes them once.
    # Clamped arguments still overflow/underflow in _scale_f64; NaN fails both tests and stays.
    k, value, _ = _exp_parts_f64(np.float64(x))
    return _scale_f64(value, _clamp(k, 1100))


@_kernel
def _expm1_parts_f64(x):
    """(k, head, low) with expm1(x) = (head + low) * 2**k to about 2^-60, for x in [-45, 712]."""
    k, r, w = _expm1_reduced_f64(x)
    # expm1(x) = 2^k (1 + expm1(r)) - 1 = 2^k ((1 - 2^-k) + r + w), and 1 - 2^-k is 0 or at
    # least 1/2 in size. It is exact for -53 <= k <= 53; above, its rounding error is kept (the
    # Fast2Sum 1 - 2^-k is exact there); below -53 the result is -1 to within 2^-53 anyway.
    inv_scale = _pow2_f64(-_clamp(k, 1000))
    one_minus = 1.0 - inv_scale
    one_minus_low = (1.0 - one_minus) - inv_scale
    head, low = _add_to_reduced_f64(one_minus, one_minus_low, r, w)
    return k, head, low


@_kernel
def expm1_f64(x):
    """exp(x) - 1 for float64, within 1 ulp, exact near 0 (expm1(-0.0) = -0.0)."""
    x = np.float64(x)
    # exp's clamp (not [-45, 712]): exp and expm1 of one argument (log_cosh's exp(-|r|) and
    # expm1(-|r|)) then share the range reduction and polynomial after inlining.
    k, head, low = _expm1_parts_f64(_clamp(x, _EXP_DATA_LIMIT))
    result = _select(x < -45.0, -1.0, _scale_f64(head, _clamp(k, 1100)))  # expm1(-45) rounds to -1
    return _select(x == 0.0, x, result)


@_kernel
def _log1p_reduced_f64(f, k, correction):
    """log(2^k (1 + f)) + correction for sqrt(2)/2 - 1 <= f < sqrt(2) - 1 (fdlibm's formula)."""
    s = f / (2.0 + f)
    z = s * s
    r = z * (_L0 + z * (_L1 + z * (_L2 + z * (_L3 + z * (_L4 + z * (_L5 + z * _L6))))))
    half_f2 = 0.5 * f * f
    kf = _int_to_f64(k)
    return kf * _LN2_HI - ((half_f2 - (s * (half_f2 + r) + (kf * _LN2_LO + correction))) - f)


@_kernel
def log_f64(x):
    """log(x) for float64, within 1 ulp, subnormal x included; log(+-0) = -inf, log(x < 0) = NaN."""
    x = np.float64(x)
    subnormal = x < _SMALLEST_NORMAL
    xs = _select(subnormal, x * _TWO_POW_54, x)
    # Subtracting sqrt(1/2)'s bits makes the exponent field k with mantissa m in [sqrt(1/2), sqrt 2).
    offset = _f64_bits(xs) - _SQRT_HALF_BITS
    k = (offset >> _MANTISSA_BITS) - _select(subnormal, 54, 0)
    m = _bits_f64((offset & _MANTISSA_MASK) + _SQRT_HALF_BITS)
    result = _log1p_reduced_f64(m - 1.0, k, 0.0)
    result = _select(x == np.inf, np.inf, result)
    result = _select(x == 0.0, -np.inf, result)
    return _select(x >= 0.0, result, np.nan)  # negative or NaN


@_kernel
def log1p_f64(x):
    """log(1 + x) for float64, within 1 ulp, exact near 0 (log1p(-0.0) = -0.0), log1p(-1) = -inf."""
    x = np.float64(x)
    u = 1.0 + x
    offset = _f64_bits(u) - _SQRT_HALF_BITS
    k = offset >> _MANTISSA_BITS
    m = _bits_f64((offset & _MANTISSA_MASK) + _SQRT_HALF_BITS)
    # u = 1 + x rounded, `error` its exact rounding error (Sterbenz makes each subtraction exact
    # in its range), and log(1 + x) = log(u) + error/u. Where k == 0 the mantissa is u itself and
    # f = x is exact: no correction. Elsewhere error/u needs only a few correct bits: 1/u is
    # 2^-k / m, and 1/m = (1 - s)/(1 + s) ~ (1 - s)^2 (1 + s^2) with the s = f/(2 + f) that the
    # logarithm computes anyway (the same division: LLVM computes it once).
    error = _select(k >= 2, 1.0 - (u - x), x - (u - 1.0))
    centre = k == 0
    f = _select(centre, x, m - 1.0)
    s = f / (2.0 + f)
    inv_m = (1.0 - s) * (1.0 - s) * (1.0 + s * s)
    correction = error * _pow2_f64(-_select(k > 1000, 1000, k)) * inv_m
    correction = _select(centre, 0.0, correction)
    result = _log1p_reduced_f64(f, k, correction)
    result = _select(x == np.inf, np.inf, result)
    result = _select(x == -1.0, -np.inf, result)
    result = _select(x >= -1.0, result, np.nan)
    return _select(x == 0.0, x, result)


@_kernel
def _copysign_f64(magnitude, sign_of):
    """|magnitude| with the sign bit of sign_of."""
    sign = _f64_bits(sign_of) ^ _f64_bits(abs(sign_of))
    return _bits_f64(_f64_bits(abs(magnitude)) | sign)


@_kernel
def _two_sum_f64(a, b):
    """(sum, error) with sum + error == a + b exactly (Knuth's TwoSum, any magnitudes)."""
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


@_kernel
def tanh_f64(x):
    """tanh(x) for float64, within 1 ulp; tanh(-0.0) = -0.0, saturates to +-1 (from |x| = 19.1)."""
    x = np.float64(x)
    a = abs(x)
    a = _select(a > 22.0, 22.0, a)  # tanh(22) rounds to 1; keeps t = expm1(2a) finite
    k, head, low = _expm1_parts_f64(a + a)
    # t = expm1(2a) = t_high + t_low (k <= 64: the scaling is exact) and d = t + 2 = d_high + d_low.
    scale = _pow2_f64(k)
    t_high = head * scale
    t_low = low * scale
    d_high, d_low = _two_sum_f64(t_high, 2.0)
    d_low = d_low + t_low
    # tanh a = t/d for small a (no cancellation) and 1 - 2/d above (t/d would inherit t's error
    # there): one division q = n/d_high, its exact remainder by FMA, and a first-order
    # correction n/d = q + (remainder - q d_low)/d_high, where 1/d_high is (1 - q)/2 for n = t
    # and q/2 for n = 2.
    small = a < 0.55
    numerator = _select(small, t_high, 2.0)
    q = numerator / d_high
    remainder = _fma(-q, d_high, numerator)
    near_zero = q + (remainder + t_low - q * d_low) * ((1.0 - q) * 0.5)
    one_minus_q = 1.0 - q
    one_minus_q_low = (1.0 - one_minus_q) - q
    far = one_minus_q + (one_minus_q_low - (remainder - q * d_low) * (q * 0.5))
    return _copysign_f64(_select(small, near_zero, far), x)


@_kernel
def sinh_f64(x):
    """sinh(x) for float64, within 1 ulp; sinh(-0.0) = -0.0, overflows above 710.47."""
    x = np.float64(x)
    a = abs(x)
    k, head, low = _expm1_parts_f64(_select(a > 712.0, 712.0, a))
    # 2 sinh a = t + t/(t + 1) with t = expm1(a) = v 2^k, v = head + low. Kept scaled by 2^-k, so
    # that t need not be finite where sinh is (a > 709.78): 2 sinh a / 2^k = v + ratio 2^-k with
    # ratio = v / (v + 2^-k). Beyond k = 1000, 2^-k is far below v's last bit and is capped.
    inv_scale = _pow2_f64(-_select(k > 1000, 1000, k))
    den_high, den_low = _two_sum_f64(head, inv_scale)
    den_low = den_low + low
    ratio = head / den_high
    remainder = _fma(-ratio, den_high, head)
    # 1/den_high = (1 - ratio) 2^k; only a few bits of it matter.
    ratio_low = (remainder + low - ratio * den_low) * ((1.0 - ratio) * _pow2_f64(_select(k > 1000, 1000, k)))
    total, total_low = _two_sum_f64(head, ratio * inv_scale)
    twice = total + (total_low + (low + ratio_low * inv_scale))
    result = _scale_f64(twice, k - 1)
    return _select(x == 0.0, x, _copysign_f64(result, x))


# ---------------------------------------------------------------------------------------------
# float32, computed in float64: the same reductions with shorter polynomials (2^-30 is enough),
# then one rounding to float32, which also makes float32 overflow, subnormals and underflow exact.

# (expm1(r) - r - r^2/2) / r^3 on |r| <= ln2/2, degree 4: minimax, weight r^2, 2^-31.2.
_QS0 = 0.16666666772941108
_QS1 = 0.04166648131450991
_QS2 = 0.00833328196628056
_QS3 = 0.0013933396499490613
_QS4 = 0.0001990981562899398
# (2 atanh(s) - 2s) / s^3 in z = s^2, degree 2: minimax, weight z, 2^-30.2.
_LS0 = 0.6666677671706916
_LS1 = 0.3997749557721253
_LS2 = 0.29873073329132993
_LN2 = 0.6931471805599453


# ---------------------------------------------------------------------------------------------
# exp combined with a data value: y*exp(z), y*exp(z) - 1 and exp(z) - y
#
# A formula like y*exp(z) needs exp(z + log(y)) where exp(z) alone overflows, and exp(z) - y
# needs y*expm1(z - log(y)) where exp(z) is near y; written as selects, every sample paid for the
# log, a second exp and the expm1. Here exp(z) comes as a double-double (value + low) 2^k and
# y as m 2^j, so one exp's range reduction serves all three and the near-cancelling
# subtraction is exact (Sterbenz), leaving exp's own 2^-57 error: better than the log forms,
# whose z - log(y) rounds by 2^-53 |z|. kmath's exp and these share _expm1_reduced_f64 of the
# same z, which LLVM computes once after inlining.

# |z| beyond which y*exp(z) is 0 or inf for every finite nonzero y (|log y| < 745).
_EXP_DATA_LIMIT = 2300.0
_EXP_FIELD_CLEAR = ~(0x7FF << _MANTISSA_BITS)  # clears the exponent, keeps sign and mantissa
_ONE_EXPONENT = _EXP_BIAS << _MANTISSA_BITS
_LARGEST_FINITE = float.fromhex("0x1.fffffffffffffp1023")


@_kernel
def _exp_parts_f64(z):
    """(k, value, low): exp(z) = (value + low) 2^k to about 2^-57 relative, value in
    [0.7, 1.42], for |z| <= _EXP_DATA_LIMIT (larger |z| is clamped; NaN stays NaN)."""
    k, r, w = _expm1_reduced_f64(_clamp(z, _EXP_DATA_LIMIT))
    value, low = _add_to_reduced_f64(1.0, 0.0, r, w)
    return k, value, low


@_kernel
def _split_f64(y):
    """(m, j) with y = m 2^j exactly and 1 <= |m| < 2, for finite nonzero y, subnormals included
    (m and j are meaningless for 0, inf and NaN: callers select those apart)."""
    subnormal = abs(y) < _SMALLEST_NORMAL
    ys = _select(subnormal, y * _TWO_POW_54, y)
    bits = _f64_bits(ys)
    j = ((bits >> _MANTISSA_BITS) & 0x7FF) - _EXP_BIAS - _select(subnormal, 54, 0)
    return _bits_f64((bits & _EXP_FIELD_CLEAR) | _ONE_EXPONENT), j


@_kernel
def _clamp(value, bound):
    """value clamped to [-bound, bound], for an integer or a float (NaN stays NaN): the one form,
    so that functions clamping the same argument alike share what follows after inlining."""
    return _select(value > bound, bound, _select(value < -bound, -bound, value))


@_kernel
def _scaled_exp_parts_f64(z, y):
    """(t, high, low) with y exp(z) = (high + low) 2^t, high + low exact to about 2^-57 relative
    (an exact product by FMA), for finite nonzero y."""
    k, value, low = _exp_parts_f64(z)
    m, j = _split_f64(y)
    high = m * value
    return k + j, high, _fma(m, value, -high) + m * low


@_kernel
def _data_special(z, y):
    """y exp(z) for y = +-inf or NaN, as IEEE's product gives it: +-inf, NaN where z = -inf or NaN."""
    return y * _select(z > -np.inf, 1.0, 0.0)


@_kernel
def scaled_exp_f64(z, y):
    """y*exp(z) for float64 within 1 ulp, finite wherever the product is, even where exp(z) alone
    overflows or underflows (z = 800, y = 1e-300); IEEE's y*exp(z) at y = 0, +-inf, NaN."""
    z = np.float64(z)
    y = np.float64(y)
    t, high, low = _scaled_exp_parts_f64(z, y)
    result = _scale_f64(high + low, _clamp(t, 1100))
    result = _select(y == 0.0, y * _select(z == np.inf, np.inf, 1.0), result)
    result = _select(abs(y) <= _LARGEST_FINITE, result, _data_special(z, y))
    return _select(z != z, z, result)


@_kernel
def scaled_expm1_f64(z, y):
    """y*exp(z) - 1 for float64 within 1 ulp plus 2^-55 of max(y*exp(z), 1): exact enough where the
    product is near 1 (the Gamma and Tweedie gradients at their optimum), and finite wherever
    exp(z) alone overflows but the product does not."""
    z = np.float64(z)
    y = np.float64(y)
    t, high, low = _scaled_exp_parts_f64(z, y)
    # Within 2^+-60 the subtraction is done at scale 2^t, where high - 2^-t is exact near 1;
    # beyond, the product is below half an ulp of 1 (result -1) or 1 is below half an ulp of it.
    near_t = _clamp(t, 60)
    near = ((high - _pow2_f64(-near_t)) + low) * _pow2_f64(near_t)
    result = _select(t > 60, _scale_f64(high + low, _clamp(t, 1100)), _select(t < -60, -1.0, near))
    result = _select(y == 0.0, y * _select(z == np.inf, np.inf, 1.0) - 1.0, result)
    result = _select(abs(y) <= _LARGEST_FINITE, result, _data_special(z, y))
    return _select(z != z, z, result)


@_kernel
def exp_minus_f64(z, y):
    """exp(z) - y for float64 within 1 ulp plus 2^-55 of max(exp(z), |y|), so exact enough where
    exp(z) is near y (the Poisson gradient at its optimum); exp(z) alone where y is negligible,
    -y where exp(z) is."""
    z = np.float64(z)
    y = np.float64(y)
    k, value, low = _exp_parts_f64(z)
    m, j = _split_f64(y)
    gap = j - k  # y / exp(z) is within a factor 3 of 2^gap
    near_gap = _clamp(gap, 60)
    near = _scale_f64((value - m * _pow2_f64(near_gap)) + low, _clamp(k, 1100))
    exp_alone = _scale_f64(value + low, _clamp(k, 1100))
    # k < -1100: exp(z) < 2^-1099 is under half the smallest subnormal, so the result rounds to -y.
    result = _select((gap > 60) | (k < -1100), -y, _select(gap < -60, exp_alone, near))
    result = _select(y == 0.0, exp_alone, result)
    result = _select(abs(y) <= _LARGEST_FINITE, result, _select(z == np.inf, np.inf, 0.0) - y)
    return _select(z != z, z, result)


@_kernel
def _expm1_reduced_wide(x):
    """(k, u) with x = k ln2 + r and u = expm1(r) to 2^-30 relative, for a float64 |x| <= 300."""
    scaled = x * _LOG2E + _SHIFTER
    k = _f64_bits(scaled) - _SHIFTER_BITS
    kf = scaled - _SHIFTER
    r = x - kf * _LN2  # kf*_LN2's rounding is 2^-46 of r at worst: far below float32's last bit
    return k, r + r * r * (0.5 + r * (_QS0 + r * (_QS1 + r * (_QS2 + r * (_QS3 + r * _QS4)))))


@_kernel
def _expm1_wide(x):
    """expm1(x) to 2^-30 relative for a float64 x in [-30, 100]."""
    k, u = _expm1_reduced_wide(x)
    # expm1(x) = 2^k ((1 - 2^-k) + u): 1 - 2^-k is exact for these k, and 0 for k = 0, where the
    # result is u itself with its full relative accuracy.
    return ((1.0 - _pow2_f64(-k)) + u) * _pow2_f64(k)


@_kernel
def exp_f32(x):
    """exp(x) for float32 (computed in float64, correctly rounded but for 2^-7 ulp)."""
    x = np.float32(x)
    wide = np.float64(x)
    wide = _select(wide > 100.0, 100.0, wide)  # exp(100) and exp(-200) are inf and 0 in float32
    wide = _select(wide < -200.0, -200.0, wide)
    k, u = _expm1_reduced_wide(wide)
    return np.float32((1.0 + u) * _pow2_f64(k))


@_kernel
def expm1_f32(x):
    """exp(x) - 1 for float32 (computed in float64); expm1(-0.0) = -0.0."""
    x = np.float32(x)
    wide = np.float64(x)
    # exp_f32's clamp, so that exp and expm1 of one argument (log_cosh) share the reduction;
    # below -30 the result is -1 in float32 (selected), and 2^-k stays finite down to -200.
    wide = _select(wide > 100.0, 100.0, wide)
    wide = _select(wide < -200.0, -200.0, wide)
    result = _select(wide < -30.0, -1.0, _expm1_wide(wide))
    return _select(x == 0.0, x, np.float32(result))


@_kernel
def _log_wide(x):
    """log(x) for a positive, finite, normal float64 x, to 2^-30 relative."""
    offset = _f64_bits(x) - _SQRT_HALF_BITS
    k = offset >> _MANTISSA_BITS
    f = _bits_f64((offset & _MANTISSA_MASK) + _SQRT_HALF_BITS) - 1.0
    return _log1p_wide(f) + _int_to_f64(k) * _LN2


@_kernel
def _log1p_wide(f):
    """log(1 + f) for sqrt(1/2) - 1 <= f < sqrt(2) - 1, to 2^-30 relative."""
    s = f / (2.0 + f)
    z = s * s
    half_f2 = 0.5 * f * f
    return f - (half_f2 - s * (half_f2 + z * (_LS0 + z * (_LS1 + z * _LS2))))


@_kernel
def log_f32(x):
    """log(x) for float32 (computed in float64: float32 subnormals are normal there)."""
    x = np.float32(x)
    wide = np.float64(x)
    result = _log_wide(wide)
    result = _select(wide == np.inf, np.inf, result)
    result = _select(wide == 0.0, -np.inf, result)
    return np.float32(_select(wide >= 0.0, result, np.nan))


@_kernel
def log1p_f32(x):
    """log(1 + x) for float32 (computed in float64); log1p(-0.0) = -0.0, log1p(-1) = -inf."""
    x = np.float32(x)
    wide = np.float64(x)
    # 1 + x is exact in float64 for float32 x in [2^-29, 2^29]; above, its rounding is 2^-53 of a
    # log of at least 20; below, the centre branch takes f = x itself.
    u = 1.0 + wide
    offset = _f64_bits(u) - _SQRT_HALF_BITS
    k = offset >> _MANTISSA_BITS
    f = _bits_f64((offset & _MANTISSA_MASK) + _SQRT_HALF_BITS) - 1.0
    f = _select(k == 0, wide, f)
    result = _log1p_wide(f) + _int_to_f64(k) * _LN2
    result = _select(wide == np.inf, np.inf, result)
    result = _select(wide == -1.0, -np.inf, result)
    result = _select(wide >= -1.0, result, np.nan)
    return _select(x == 0.0, x, np.float32(result))


@_kernel
def tanh_f32(x):
    """tanh(x) for float32 (computed in float64); tanh(-0.0) = -0.0, saturates to +-1."""
    x = np.float32(x)
    a = abs(np.float64(x))
    a = _select(a > 20.0, 20.0, a)  # tanh(9.1) already rounds to 1 in float32
    t = _expm1_wide(a + a)
    # t/(t + 2) has no cancellation; float64 leaves 2^-50 for the roundings.
    return np.float32(_copysign_f64(t / (t + 2.0), np.float64(x)))


@_kernel
def sinh_f32(x):
    """sinh(x) for float32 (computed in float64); sinh(-0.0) = -0.0, overflows above 89.4."""
    x = np.float32(x)
    a = abs(np.float64(x))
    a = _select(a > 100.0, 100.0, a)
    t = _expm1_wide(a)
    # 2 sinh a = t + t/(t + 1): both terms positive, no cancellation.
    result = 0.5 * (t + t / (t + 1.0))
    return _select(x == 0.0, x, np.float32(_copysign_f64(result, np.float64(x))))


# float32 exp with data: z and y are float32, so in float64 y*2^k is exact for |k| <= 433 and
# exp(z) = (value + low) 2^k needs none of the float64 functions' exponent splitting. Cheaper,
# with the same double-double exp and the same error bound.

# |z| beyond which y*exp(z), for every finite nonzero float32 y (|log y| < 104), rounds to 0 or
# inf in float32; clamped there, 2^k is a normal float64.
_WIDE_DATA_LIMIT = 300.0


@_kernel
def _exp_parts_wide(z):
    """(scale, value, low): exp(z) = scale (value + low), scale = 2^k a normal float64, for a
    float32 z held in float64 (|z| beyond _WIDE_DATA_LIMIT is clamped; NaN stays NaN)."""
    k, value, low = _exp_parts_f64(_clamp(z, _WIDE_DATA_LIMIT))
    return _pow2_f64(k), value, low


@_kernel
def scaled_exp_f32(z, y):
    """y*exp(z) for float32 (float64 inside, rounded once, correctly but for 2^-7 ulp): finite
    wherever the product is; IEEE's y*exp(z) at z = +-inf."""
    z = np.float64(np.float32(z))
    y = np.float64(np.float32(y))
    # No cancellation here: exp_f32's short polynomial (2^-30) is enough, as for exp_f32 itself.
    k, u = _expm1_reduced_wide(_clamp(z, _WIDE_DATA_LIMIT))
    result = (y * _pow2_f64(k)) * (1.0 + u)  # y*2^k is exact
    result = _select(z == np.inf, y * np.inf, result)
    result = _select(z == -np.inf, y * 0.0, result)
    return np.float32(result)


@_kernel
def scaled_expm1_f32(z, y):
    """y*exp(z) - 1 for float32 (float64 inside), within the float64 function's bound: where the
    product is near 1, Y*value - 1 is exact (FMA and Sterbenz) and exp's low part is added after."""
    z = np.float64(np.float32(z))
    y = np.float64(np.float32(y))
    scale, value, low = _exp_parts_wide(z)
    scaled = y * scale
    high = scaled * value
    high_error = _fma(scaled, value, -high)
    result = ((high - 1.0) + high_error) + scaled * low
    result = _select(abs(y) <= _LARGEST_FINITE, result, _data_special(z, y))
    result = _select(z == np.inf, y * np.inf - 1.0, result)
    result = _select(z == -np.inf, y * 0.0 - 1.0, result)
    return np.float32(result)


@_kernel
def exp_minus_f32(z, y):
    """exp(z) - y for float32 (float64 inside), within the float64 function's bound: where exp(z)
    is near y, scale*value - y is exact (Sterbenz) and exp's low part is added after."""
    z = np.float64(np.float32(z))
    y = np.float64(np.float32(y))
    scale, value, low = _exp_parts_wide(z)
    result = (scale * value - y) + scale * low
    result = _select(z == np.inf, np.inf - y, result)
    return np.float32(result)


KERNEL_MATH: dict[tuple[str, str], str] = {
    (name, dtype): f"{name}_{suffix}"
    for name in ("exp", "expm1", "log", "log1p", "tanh", "sinh", "scaled_exp", "scaled_expm1", "exp_minus")
    for dtype, suffix in (("float64", "f64"), ("float32", "f32"))
}

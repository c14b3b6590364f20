"""exp, log and tanh exactly as refbinn's BayesBiNN equations compute them.

A port that wants refbinn's bits (its trace against refbinn's with ``refbinn check-trace
--rtol 0``) computes every exp, log and tanh of the equations in ``docs/trace_format.md``
as these functions do; one that accepts a few ulp uses its framework's own and compares
with check-trace's default tolerance. The NumPy reference (``backend="numpy"``) and the
fused kernels both call these, so they agree bit for bit.

float64: the C library's exp, log and tanh (glibc's libm on Linux), which CPython's
``math.exp``, ``math.log`` and ``math.tanh`` call. NumPy's float64 ``np.exp``, ``np.log``
and ``np.tanh`` are SIMD approximations that can differ from them, and between CPUs, in the
last bit: a port calls the C library (``math.*`` per element will do for a trace), not
NumPy's. Another C library may round differently in the last bit.

float32: refbinn's own functions, plain float32 arithmetic (a range reduction and a
truncated series), within 3 ulp of the exact value and the same on every CPU: every
step below is one correctly rounded IEEE float32 operation, evaluated left to right as
written, with no fused multiply-add. (On a grid of 4M points in [-20, 20], tanh32 equals
float64 tanh rounded to float32 wherever abs(x) > 8, and is 1 to 3 ulp off it for 2.2% of
the grid.) The constants, each rounded once to float32 from float64::

    LN2_HI = round(ln 2 * 2**12) / 2**12      LN2_LO = ln 2 - LN2_HI      LOG2E = 1 / ln 2
    C_k = 1/k! (k = 2..10)                    A_k = 1/k (k = 3, 5, 7, 9)  SQRT2 = sqrt 2
    EXP_OVER = log(largest float32) = 88.72284   EXP_UNDER = -87.33   TINY = 2**-126

The three functions::

    exp32(x):  xc = min(max(x, EXP_UNDER), EXP_OVER);  k = floor(xc*LOG2E + 0.5)
               r = (xc - k*LN2_HI) - k*LN2_LO
               p = 1 + r*(1 + r*(C2 + r*(C3 + r*(C4 + r*(C5 + r*(C6 + r*C7))))))
               result p * 2**k, 2**k made from its exponent bits (k = 128: (p * 2**127) * 2);
               x < EXP_UNDER gives 0, x > EXP_OVER gives inf, NaN gives NaN
    log32(x):  a subnormal x is first multiplied by 2**23 (and e below starts 23 lower);
               x = 2**e * m, m in [1, 2), from the bits; if m > SQRT2: m = m*0.5, e = e + 1
               f = m - 1;  s = f/(2 + f);  s2 = s*s
               p = 2*s + 2*s*s2*(A3 + s2*(A5 + s2*(A7 + s2*A9)))
               result e*LN2_HI + (e*LN2_LO + p); log 0 = -inf, log(x < 0) = NaN, log inf = inf
    tanh32(x): y = min(2*abs(x), 40)
               t = y*(1 + y*(C2 + y*(C3 + y*(C4 + ... + y*(C9 + y*C10)))))   (expm1(y), its series)
               y < 1: q = t/(t + 2);  else: q = 1 - 2/(exp32(y) + 1);  result q with the sign of x

``refbinn/optim/_elementary.py`` holds these as NumPy array code (``exp32_np``,
``log32_np``, ``tanh32_np``, about forty lines with their constants in
``refbinn/optim/_float32.py``), written in the order above: a port may copy it.
"""
from __future__ import annotations

# the NumPy reference's functions (the kernels compute the same bits), under public names
from .optim._elementary import exp_ as exp, log_ as log, tanh_ as tanh

__all__ = ["exp", "log", "tanh"]

"""A software prefetch of one array row for numba kernels (``llvm.prefetch``), which numba does not expose.

Why hand-written: the layout's edges each read rows of a coordinate array far larger than the
caches (174 MB at 8.7M galaxies, 5-D), at random. A row read waits ~100 ns for memory, and the
edge's arithmetic cannot start before it arrives. Asking for the next edge's rows while this
edge's arithmetic runs hides that wait. A prefetch is only a hint: it never changes a value, so a
kernel gives the same bits with it or without it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch_row(typingctx, array, row):
    """Ask the CPU to bring ``array[row]`` (a C-contiguous 2-D array's row) into the caches; no bounds check."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        row = context.cast(builder, args[1], signature.args[1], types.intp)
        first = cgutils.get_item_pointer(context, builder, array_type, view, [row, zero], wraparound=False)
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        ncols = builder.extract_value(view.shape, 1)
        end = builder.sub(ncols, context.get_constant(types.intp, 1))
        last = cgutils.get_item_pointer(context, builder, array_type, view, [row, end], wraparound=False)
        for pointer in (first, last):  # a row may straddle two cache lines (20 bytes in 5-D)
            builder.call(fn, [builder.bitcast(pointer, byte), i32(0), i32(3), i32(1)])  # read, keep, data cache
        return context.get_dummy_value()

    return types.void(array, row), codegen

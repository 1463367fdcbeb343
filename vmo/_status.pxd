# The constants of the contract, for C: statuses, ops, rights, clone/info/object-type values,
# page geometry and size limits. Declarations only (no .pyx, no runtime module): every other
# compiled module takes its constants from here. The values equal `vmo.errors.Status` and
# `vmo.constants` (tests/test_status_constants.py checks them through `_kernel._C_CONSTANTS`).
#
# The C names carry a VMO_ prefix (`NO_ERROR` here is `VMO_NO_ERROR` in the generated C), so
# no platform macro (PAGE_SIZE in <limits.h> on some libcs, NO_ERROR on Windows) can collide.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from *:
    """
    #ifndef VMO_STATUS_CONSTANTS
    #define VMO_STATUS_CONSTANTS
    /* Statuses (docs/magenta.md 1.1, the 2017-04-13 numbering). */
    #define VMO_NO_ERROR 0
    #define VMO_ERR_INTERNAL (-1)
    #define VMO_ERR_NOT_SUPPORTED (-2)
    #define VMO_ERR_NO_RESOURCES (-3)
    #define VMO_ERR_NO_MEMORY (-4)
    #define VMO_ERR_CALL_FAILED (-5)
    #define VMO_ERR_INTERRUPTED_RETRY (-6)
    #define VMO_ERR_INVALID_ARGS (-10)
    #define VMO_ERR_BAD_HANDLE (-11)
    #define VMO_ERR_WRONG_TYPE (-12)
    #define VMO_ERR_BAD_SYSCALL (-13)
    #define VMO_ERR_OUT_OF_RANGE (-14)
    #define VMO_ERR_BUFFER_TOO_SMALL (-15)
    #define VMO_ERR_BAD_STATE (-20)
    #define VMO_ERR_TIMED_OUT (-21)
    #define VMO_ERR_SHOULD_WAIT (-22)
    #define VMO_ERR_CANCELED (-23)
    #define VMO_ERR_HANDLE_CLOSED (-23)
    #define VMO_ERR_PEER_CLOSED (-24)
    #define VMO_ERR_NOT_FOUND (-25)
    #define VMO_ERR_ALREADY_EXISTS (-26)
    #define VMO_ERR_ALREADY_BOUND (-27)
    #define VMO_ERR_UNAVAILABLE (-28)
    #define VMO_ERR_ACCESS_DENIED (-30)
    #define VMO_ERR_IO (-40)
    #define VMO_ERR_IO_REFUSED (-41)
    #define VMO_ERR_IO_DATA_INTEGRITY (-42)
    #define VMO_ERR_IO_DATA_LOSS (-43)
    #define VMO_ERR_BAD_PATH (-50)
    #define VMO_ERR_NOT_DIR (-51)
    #define VMO_ERR_NOT_FILE (-52)
    #define VMO_ERR_FILE_BIG (-53)
    #define VMO_ERR_NO_SPACE (-54)
    #define VMO_ERR_STOP (-60)
    #define VMO_ERR_NEXT (-61)
    /* vmo_op_range ops (docs/magenta.md 2.1). */
    #define VMO_MX_VMO_OP_COMMIT 1
    #define VMO_MX_VMO_OP_DECOMMIT 2
    #define VMO_MX_VMO_OP_LOCK 3
    #define VMO_MX_VMO_OP_UNLOCK 4
    #define VMO_MX_VMO_OP_LOOKUP 5
    #define VMO_MX_VMO_OP_CACHE_SYNC 6
    #define VMO_MX_VMO_OP_CACHE_INVALIDATE 7
    #define VMO_MX_VMO_OP_CACHE_CLEAN 8
    #define VMO_MX_VMO_OP_CACHE_CLEAN_INVALIDATE 9
    /* Rights (docs/magenta.md 2.3, 2.4). */
    #define VMO_MX_RIGHT_NONE 0x0
    #define VMO_MX_RIGHT_DUPLICATE 0x1
    #define VMO_MX_RIGHT_TRANSFER 0x2
    #define VMO_MX_RIGHT_READ 0x4
    #define VMO_MX_RIGHT_WRITE 0x8
    #define VMO_MX_RIGHT_EXECUTE 0x10
    #define VMO_MX_RIGHT_MAP 0x20
    #define VMO_MX_RIGHT_GET_PROPERTY 0x40
    #define VMO_MX_RIGHT_SET_PROPERTY 0x80
    #define VMO_MX_RIGHT_ENUMERATE 0x100
    #define VMO_MX_RIGHT_DESTROY 0x200
    #define VMO_MX_RIGHT_SET_POLICY 0x400
    #define VMO_MX_RIGHT_GET_POLICY 0x800
    #define VMO_MX_RIGHT_SAME_RIGHTS 0x80000000U
    #define VMO_MX_DEFAULT_VMO_RIGHTS 0x3F
    #define VMO_MX_DEFAULT_EVENT_RIGHTS 0x0F
    /* Handles, clones, object info (docs/magenta.md 2.5, 3.11). */
    #define VMO_MX_HANDLE_INVALID 0
    #define VMO_MX_MAX_HANDLES (1 << 18)
    #define VMO_MX_VMO_CLONE_COPY_ON_WRITE 1
    #define VMO_MX_INFO_NONE 0
    #define VMO_MX_INFO_HANDLE_VALID 1
    #define VMO_MX_INFO_HANDLE_BASIC 2
    #define VMO_MX_INFO_LAST_OBJECT_TOPIC 13
    #define VMO_MX_OBJ_TYPE_NONE 0
    #define VMO_MX_OBJ_TYPE_VMEM 3
    #define VMO_MX_OBJ_TYPE_EVENT 5
    #define VMO_MX_OBJ_PROP_NONE 0
    #define VMO_MX_OBJ_PROP_WAITABLE 1
    /* Page geometry and size limits (docs/magenta.md 2.6). */
    #define VMO_PAGE_SHIFT 12
    #define VMO_PAGE_SIZE 4096
    #define VMO_PAGE_MASK 4095
    #define VMO_MX_VMO_MAX_SIZE 0xFFFFFFFFFFFFF000ULL
    #define VMO_U64_MAX 0xFFFFFFFFFFFFFFFFULL
    /* Page index bound for whole-VMO walks: every page of MX_VMO_MAX_SIZE is below it. */
    #define VMO_PAGE_LIMIT (1ULL << 52)
    /* Internal, never a Magenta status: the host refused an allocation inside nogil code
       (object layer, sys_* cores). The caller that holds the GIL raises MemoryError. */
    #define VMO_HOST_NO_MEMORY (-4096)
    #endif
    """
    enum:
        NO_ERROR "VMO_NO_ERROR"
        ERR_INTERNAL "VMO_ERR_INTERNAL"
        ERR_NOT_SUPPORTED "VMO_ERR_NOT_SUPPORTED"
        ERR_NO_RESOURCES "VMO_ERR_NO_RESOURCES"
        ERR_NO_MEMORY "VMO_ERR_NO_MEMORY"
        ERR_CALL_FAILED "VMO_ERR_CALL_FAILED"
        ERR_INTERRUPTED_RETRY "VMO_ERR_INTERRUPTED_RETRY"
        ERR_INVALID_ARGS "VMO_ERR_INVALID_ARGS"
        ERR_BAD_HANDLE "VMO_ERR_BAD_HANDLE"
        ERR_WRONG_TYPE "VMO_ERR_WRONG_TYPE"
        ERR_BAD_SYSCALL "VMO_ERR_BAD_SYSCALL"
        ERR_OUT_OF_RANGE "VMO_ERR_OUT_OF_RANGE"
        ERR_BUFFER_TOO_SMALL "VMO_ERR_BUFFER_TOO_SMALL"
        ERR_BAD_STATE "VMO_ERR_BAD_STATE"
        ERR_TIMED_OUT "VMO_ERR_TIMED_OUT"
        ERR_SHOULD_WAIT "VMO_ERR_SHOULD_WAIT"
        ERR_CANCELED "VMO_ERR_CANCELED"
        ERR_HANDLE_CLOSED "VMO_ERR_HANDLE_CLOSED"
        ERR_PEER_CLOSED "VMO_ERR_PEER_CLOSED"
        ERR_NOT_FOUND "VMO_ERR_NOT_FOUND"
        ERR_ALREADY_EXISTS "VMO_ERR_ALREADY_EXISTS"
        ERR_ALREADY_BOUND "VMO_ERR_ALREADY_BOUND"
        ERR_UNAVAILABLE "VMO_ERR_UNAVAILABLE"
        ERR_ACCESS_DENIED "VMO_ERR_ACCESS_DENIED"
        ERR_IO "VMO_ERR_IO"
        ERR_IO_REFUSED "VMO_ERR_IO_REFUSED"
        ERR_IO_DATA_INTEGRITY "VMO_ERR_IO_DATA_INTEGRITY"
        ERR_IO_DATA_LOSS "VMO_ERR_IO_DATA_LOSS"
        ERR_BAD_PATH "VMO_ERR_BAD_PATH"
        ERR_NOT_DIR "VMO_ERR_NOT_DIR"
        ERR_NOT_FILE "VMO_ERR_NOT_FILE"
        ERR_FILE_BIG "VMO_ERR_FILE_BIG"
        ERR_NO_SPACE "VMO_ERR_NO_SPACE"
        ERR_STOP "VMO_ERR_STOP"
        ERR_NEXT "VMO_ERR_NEXT"

        MX_VMO_OP_COMMIT "VMO_MX_VMO_OP_COMMIT"
        MX_VMO_OP_DECOMMIT "VMO_MX_VMO_OP_DECOMMIT"
        MX_VMO_OP_LOCK "VMO_MX_VMO_OP_LOCK"
        MX_VMO_OP_UNLOCK "VMO_MX_VMO_OP_UNLOCK"
        MX_VMO_OP_LOOKUP "VMO_MX_VMO_OP_LOOKUP"
        MX_VMO_OP_CACHE_SYNC "VMO_MX_VMO_OP_CACHE_SYNC"
        MX_VMO_OP_CACHE_INVALIDATE "VMO_MX_VMO_OP_CACHE_INVALIDATE"
        MX_VMO_OP_CACHE_CLEAN "VMO_MX_VMO_OP_CACHE_CLEAN"
        MX_VMO_OP_CACHE_CLEAN_INVALIDATE "VMO_MX_VMO_OP_CACHE_CLEAN_INVALIDATE"

        MX_RIGHT_NONE "VMO_MX_RIGHT_NONE"
        MX_RIGHT_DUPLICATE "VMO_MX_RIGHT_DUPLICATE"
        MX_RIGHT_TRANSFER "VMO_MX_RIGHT_TRANSFER"
        MX_RIGHT_READ "VMO_MX_RIGHT_READ"
        MX_RIGHT_WRITE "VMO_MX_RIGHT_WRITE"
        MX_RIGHT_EXECUTE "VMO_MX_RIGHT_EXECUTE"
        MX_RIGHT_MAP "VMO_MX_RIGHT_MAP"
        MX_RIGHT_GET_PROPERTY "VMO_MX_RIGHT_GET_PROPERTY"
        MX_RIGHT_SET_PROPERTY "VMO_MX_RIGHT_SET_PROPERTY"
        MX_RIGHT_ENUMERATE "VMO_MX_RIGHT_ENUMERATE"
        MX_RIGHT_DESTROY "VMO_MX_RIGHT_DESTROY"
        MX_RIGHT_SET_POLICY "VMO_MX_RIGHT_SET_POLICY"
        MX_RIGHT_GET_POLICY "VMO_MX_RIGHT_GET_POLICY"
        MX_DEFAULT_VMO_RIGHTS "VMO_MX_DEFAULT_VMO_RIGHTS"
        MX_DEFAULT_EVENT_RIGHTS "VMO_MX_DEFAULT_EVENT_RIGHTS"

        MX_HANDLE_INVALID "VMO_MX_HANDLE_INVALID"
        MX_MAX_HANDLES "VMO_MX_MAX_HANDLES"
        MX_VMO_CLONE_COPY_ON_WRITE "VMO_MX_VMO_CLONE_COPY_ON_WRITE"
        MX_INFO_NONE "VMO_MX_INFO_NONE"
        MX_INFO_HANDLE_VALID "VMO_MX_INFO_HANDLE_VALID"
        MX_INFO_HANDLE_BASIC "VMO_MX_INFO_HANDLE_BASIC"
        MX_INFO_LAST_OBJECT_TOPIC "VMO_MX_INFO_LAST_OBJECT_TOPIC"
        MX_OBJ_TYPE_NONE "VMO_MX_OBJ_TYPE_NONE"
        MX_OBJ_TYPE_VMEM "VMO_MX_OBJ_TYPE_VMEM"
        MX_OBJ_TYPE_EVENT "VMO_MX_OBJ_TYPE_EVENT"
        MX_OBJ_PROP_NONE "VMO_MX_OBJ_PROP_NONE"
        MX_OBJ_PROP_WAITABLE "VMO_MX_OBJ_PROP_WAITABLE"

        PAGE_SHIFT "VMO_PAGE_SHIFT"
        HOST_NO_MEMORY "VMO_HOST_NO_MEMORY"
        PAGE_SIZE "VMO_PAGE_SIZE"
        PAGE_MASK "VMO_PAGE_MASK"

    # Beyond int: typed constants.
    const uint32_t MX_RIGHT_SAME_RIGHTS "VMO_MX_RIGHT_SAME_RIGHTS"
    const uint64_t MX_VMO_MAX_SIZE "VMO_MX_VMO_MAX_SIZE"
    const uint64_t U64_MAX "VMO_U64_MAX"
    const uint64_t PAGE_LIMIT "VMO_PAGE_LIMIT"

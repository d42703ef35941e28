// nccl.cpp — the plugin's NCCL entries: one per NCCL call, returning its ncclResult_t. The
// communicator's logic (bootstrap, deadlines, stream ordering) is NcclCommunicator's, in
// parallel/backend/nccl.cpp; this file only translates the ABI's constants and handles.
//
// Built without NCCL (CMOE_PLUGIN_HAVE_NCCL undefined), every entry returns CMOE_NCCL_NOT_BUILT
// and the table says has_nccl = 0, which NcclCommunicator checks first.
#include "core/cuda/plugin/check.h"
#include "core/cuda/plugin/entries.h"

#ifdef CMOE_PLUGIN_HAVE_NCCL

#include <nccl.h>

#include <cstring>

static_assert(NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0),
              "the NCCL backend needs NCCL >= 2.18 (ncclCommSplit)");
static_assert(static_cast<int>(ncclSuccess) == CMOE_NCCL_SUCCESS &&
                  static_cast<int>(ncclInProgress) == CMOE_NCCL_IN_PROGRESS,
              "cuda_api.h's NCCL result values must be NCCL's");
static_assert(sizeof(ncclUniqueId) == CMOE_NCCL_UNIQUE_ID_BYTES);

namespace cmoe::cuda_plugin {

namespace {

// Both are pointers to an opaque struct; the caller's CmoeNcclComm slot is NCCL's ncclComm_t.
static_assert(sizeof(ncclComm_t) == sizeof(CmoeNcclComm));
ncclComm_t to_nccl(CmoeNcclComm c) { return reinterpret_cast<ncclComm_t>(c); }

// The ABI's element type as NCCL's; ncclNumTypes for a code NCCL has no type for (NCCL then
// answers ncclInvalidArgument, naming it).
ncclDataType_t nccl_type(int32_t dtype) {
  switch (dtype) {
    case CMOE_CUDA_F32: return ncclFloat32;
    case CMOE_CUDA_BF16: return ncclBfloat16;
    case CMOE_CUDA_I32: return ncclInt32;
    case CMOE_CUDA_I64: return ncclInt64;
    case CMOE_CUDA_U8: return ncclUint8;
    default: return ncclNumTypes;
  }
}

ncclRedOp_t nccl_op(int32_t op) {
  switch (op) {
    case CMOE_NCCL_SUM: return ncclSum;
    case CMOE_NCCL_MAX: return ncclMax;
    case CMOE_NCCL_MIN: return ncclMin;
    default: return ncclNumOps;
  }
}

ncclConfig_t make_config(int32_t blocking) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = blocking != 0 ? 1 : 0;
  return config;
}

}  // namespace

const char* api_nccl_error_string(int32_t result) {
  return ncclGetErrorString(static_cast<ncclResult_t>(result));
}

const char* api_nccl_last_error(CmoeNcclComm comm) { return ncclGetLastError(to_nccl(comm)); }

int32_t api_nccl_get_unique_id(uint8_t* id) {
  ncclUniqueId uid;
  const ncclResult_t r = ncclGetUniqueId(&uid);
  if (r == ncclSuccess) std::memcpy(id, &uid, sizeof(uid));
  return r;
}

int32_t api_nccl_comm_init_rank(CmoeNcclComm* comm, const uint8_t* id, int32_t nranks, int32_t rank,
                                int32_t blocking) {
  ncclUniqueId uid;
  std::memcpy(&uid, id, sizeof(uid));
  ncclConfig_t config = make_config(blocking);
  // The caller's handle itself: a non-blocking initialisation may fill it in the background.
  *comm = nullptr;
  return ncclCommInitRankConfig(reinterpret_cast<ncclComm_t*>(comm), nranks, uid, rank, &config);
}

int32_t api_nccl_comm_split(CmoeNcclComm* new_comm, CmoeNcclComm comm, int32_t color, int32_t key,
                            int32_t blocking) {
  ncclConfig_t config = make_config(blocking);
  // Non-blocking: NCCL writes the new communicator into *new_comm when the split has settled.
  return ncclCommSplit(to_nccl(comm), color, key, reinterpret_cast<ncclComm_t*>(new_comm), &config);
}

int32_t api_nccl_comm_finalize(CmoeNcclComm comm) { return ncclCommFinalize(to_nccl(comm)); }
int32_t api_nccl_comm_destroy(CmoeNcclComm comm) { return ncclCommDestroy(to_nccl(comm)); }
int32_t api_nccl_comm_abort(CmoeNcclComm comm) { return ncclCommAbort(to_nccl(comm)); }

int32_t api_nccl_comm_get_async_error(int32_t* async_error, CmoeNcclComm comm) {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t r = ncclCommGetAsyncError(to_nccl(comm), &state);
  *async_error = state;
  return r;
}

int32_t api_nccl_comm_user_rank(int32_t* rank, CmoeNcclComm comm) {
  int v = -1;
  const ncclResult_t r = ncclCommUserRank(to_nccl(comm), &v);
  *rank = v;
  return r;
}

int32_t api_nccl_comm_count(int32_t* count, CmoeNcclComm comm) {
  int v = -1;
  const ncclResult_t r = ncclCommCount(to_nccl(comm), &v);
  *count = v;
  return r;
}

int32_t api_nccl_group_start() { return ncclGroupStart(); }
int32_t api_nccl_group_end() { return ncclGroupEnd(); }

int32_t api_nccl_all_reduce(void* recv, const void* send, size_t count, int32_t dtype, int32_t op,
                            CmoeNcclComm comm, CmoeCudaStream stream) {
  return ncclAllReduce(send, recv, count, nccl_type(dtype), nccl_op(op), to_nccl(comm),
                       to_cuda(stream));
}

int32_t api_nccl_reduce_scatter(void* recv, const void* send, size_t recv_count, int32_t dtype,
                                int32_t op, CmoeNcclComm comm, CmoeCudaStream stream) {
  return ncclReduceScatter(send, recv, recv_count, nccl_type(dtype), nccl_op(op), to_nccl(comm),
                           to_cuda(stream));
}

int32_t api_nccl_all_gather(void* recv, const void* send, size_t send_bytes, CmoeNcclComm comm,
                            CmoeCudaStream stream) {
  return ncclAllGather(send, recv, send_bytes, ncclUint8, to_nccl(comm), to_cuda(stream));
}

int32_t api_nccl_broadcast(void* recv, const void* send, size_t bytes, int32_t root,
                           CmoeNcclComm comm, CmoeCudaStream stream) {
  return ncclBroadcast(send, recv, bytes, ncclUint8, root, to_nccl(comm), to_cuda(stream));
}

int32_t api_nccl_send(const void* buf, size_t bytes, int32_t peer, CmoeNcclComm comm,
                      CmoeCudaStream stream) {
  return ncclSend(buf, bytes, ncclUint8, peer, to_nccl(comm), to_cuda(stream));
}

int32_t api_nccl_recv(void* buf, size_t bytes, int32_t peer, CmoeNcclComm comm,
                      CmoeCudaStream stream) {
  return ncclRecv(buf, bytes, ncclUint8, peer, to_nccl(comm), to_cuda(stream));
}

}  // namespace cmoe::cuda_plugin

#else  // !CMOE_PLUGIN_HAVE_NCCL

namespace cmoe::cuda_plugin {

const char* api_nccl_error_string(int32_t result) {
  return result == CMOE_NCCL_NOT_BUILT ? "this CUDA backend was built without NCCL"
                                       : "unknown NCCL result";
}
const char* api_nccl_last_error(CmoeNcclComm) { return ""; }
int32_t api_nccl_get_unique_id(uint8_t*) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_comm_init_rank(CmoeNcclComm* comm, const uint8_t*, int32_t, int32_t, int32_t) {
  *comm = nullptr;
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_comm_split(CmoeNcclComm* new_comm, CmoeNcclComm, int32_t, int32_t, int32_t) {
  *new_comm = nullptr;
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_comm_finalize(CmoeNcclComm) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_comm_destroy(CmoeNcclComm) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_comm_abort(CmoeNcclComm) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_comm_get_async_error(int32_t* async_error, CmoeNcclComm) {
  *async_error = CMOE_NCCL_NOT_BUILT;
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_comm_user_rank(int32_t*, CmoeNcclComm) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_comm_count(int32_t*, CmoeNcclComm) { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_group_start() { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_group_end() { return CMOE_NCCL_NOT_BUILT; }
int32_t api_nccl_all_reduce(void*, const void*, size_t, int32_t, int32_t, CmoeNcclComm,
                            CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_reduce_scatter(void*, const void*, size_t, int32_t, int32_t, CmoeNcclComm,
                                CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_all_gather(void*, const void*, size_t, CmoeNcclComm, CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_broadcast(void*, const void*, size_t, int32_t, CmoeNcclComm, CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_send(const void*, size_t, int32_t, CmoeNcclComm, CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}
int32_t api_nccl_recv(void*, size_t, int32_t, CmoeNcclComm, CmoeCudaStream) {
  return CMOE_NCCL_NOT_BUILT;
}

}  // namespace cmoe::cuda_plugin

#endif  // CMOE_PLUGIN_HAVE_NCCL

// edgeprune: TFLM arena probe for the 32-bit target (benchmarks/tflm_target.py --probe).
// For each embedded model: arena_used_bytes() after AllocateTensors() with the interpreter an
// export uses (MicroInterpreter(model, resolver, arena, size)), then the same allocation again
// through a SingleArenaBufferAllocator subclass that prints every persistent (tail) allocation
// (size, alignment). Also prints sizeof/alignof of TFLM's public allocation structs.
#include <cstdint>
#include <new>

#include "epv_support.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" const unsigned char* const epm_models[];
extern "C" const unsigned int epm_n_models;

namespace {
constexpr size_t kArena = EPM_ARENA_BYTES;
alignas(16) uint8_t g_arena[kArena];
tflite::MicroMutableOpResolver<16> g_resolver;

class LoggingAllocator : public tflite::SingleArenaBufferAllocator {
 public:
  LoggingAllocator(uint8_t* b, size_t n) : tflite::SingleArenaBufferAllocator(b, n) {}
  uint8_t* AllocatePersistentBuffer(size_t size, size_t alignment) override {
    epv_print("pa", (uint32_t)size, (uint32_t)alignment);
    return tflite::SingleArenaBufferAllocator::AllocatePersistentBuffer(size, alignment);
  }
};

// Each kernel's registration wrapped so that its init and prepare print a marker ("oi" / "op",
// the op's index in OPS of benchmarks/tflm_target.py) before running: the tail allocations that
// follow belong to that op.
TFLMRegistration g_orig[16];
template <int K>
void* InitW(TfLiteContext* c, const char* b, size_t n) {
  epv_print("oi", K, 0);
  return g_orig[K].init ? g_orig[K].init(c, b, n) : nullptr;
}
template <int K>
TfLiteStatus PrepareW(TfLiteContext* c, TfLiteNode* node) {
  epv_print("op", K, 0);
  return g_orig[K].prepare ? g_orig[K].prepare(c, node) : kTfLiteOk;
}
template <int K>
TFLMRegistration Wrap(const TFLMRegistration& r) {
  g_orig[K] = r;
  TFLMRegistration w = r;
  w.init = InitW<K>;
  w.prepare = PrepareW<K>;
  return w;
}

#define EPM_SIZE(id, T) epv_print("sz", id, (uint32_t)sizeof(T)); epv_print("al", id, (uint32_t)alignof(T))
}  // namespace

int main() {
  epv_timer_init();
  g_resolver.AddConv2D(Wrap<0>(tflite::Register_CONV_2D()));
  g_resolver.AddDepthwiseConv2D(Wrap<1>(tflite::Register_DEPTHWISE_CONV_2D()));
  g_resolver.AddFullyConnected(Wrap<2>(tflite::Register_FULLY_CONNECTED()));
  g_resolver.AddMaxPool2D(Wrap<3>(tflite::Register_MAX_POOL_2D()));
  g_resolver.AddAveragePool2D(Wrap<4>(tflite::Register_AVERAGE_POOL_2D()));
  g_resolver.AddReshape(Wrap<5>(tflite::Register_RESHAPE()));
  g_resolver.AddSoftmax(Wrap<6>(tflite::Register_SOFTMAX()));
  g_resolver.AddAdd(Wrap<7>(tflite::Register_ADD()));
  g_resolver.AddConcatenation(Wrap<8>(tflite::Register_CONCATENATION()));
  g_resolver.AddPad(Wrap<9>(tflite::Register_PAD()));
  g_resolver.AddLogistic(Wrap<10>(tflite::Register_LOGISTIC()));
  g_resolver.AddTanh(Wrap<11>(tflite::Register_TANH()));
  g_resolver.AddRelu(Wrap<12>(tflite::Register_RELU()));
  g_resolver.AddRelu6(Wrap<13>(tflite::Register_RELU6()));
  // ids: see STRUCTS in benchmarks/tflm_target.py
  EPM_SIZE(0, tflite::SingleArenaBufferAllocator);
  EPM_SIZE(1, tflite::GreedyMemoryPlanner);
  EPM_SIZE(2, tflite::MicroAllocator);
  EPM_SIZE(3, tflite::SubgraphAllocations);
  EPM_SIZE(4, TfLiteEvalTensor);
  EPM_SIZE(5, tflite::NodeAndRegistration);
  EPM_SIZE(6, TfLiteTensor);
  EPM_SIZE(7, TfLiteAffineQuantization);
  EPM_SIZE(8, tflite::ScratchBufferHandle);
  EPM_SIZE(9, tflite::internal::ScratchBufferRequest);
  EPM_SIZE(10, TfLiteIntArray);
  EPM_SIZE(11, TfLiteTensor*);
  EPM_SIZE(12, TfLiteConvParams);
  EPM_SIZE(13, TfLiteDepthwiseConvParams);
  EPM_SIZE(14, TfLiteFullyConnectedParams);
  EPM_SIZE(15, TfLitePoolParams);
  EPM_SIZE(16, TfLiteAddParams);
  EPM_SIZE(17, TfLiteSoftmaxParams);
  EPM_SIZE(18, TfLiteConcatenationParams);
  EPM_SIZE(19, TfLiteReshapeParams);
  EPM_SIZE(20, tflite::MicroInterpreter);
  EPM_SIZE(21, TfLiteNode);
  EPM_SIZE(22, TfLiteIntArray*);
  for (uint32_t m = 0; m < epm_n_models; ++m) {
    const tflite::Model* model = tflite::GetModel(epm_models[m]);
    {
      tflite::MicroInterpreter it(model, g_resolver, g_arena, kArena);
      TfLiteStatus s = it.AllocateTensors();
      epv_print("used", m, s == kTfLiteOk ? (uint32_t)it.arena_used_bytes() : 0xffffffffu);
    }
    {
      // the allocation MicroAllocator::Create(arena, size) makes, with every tail allocation
      // printed (the allocator object itself lives outside the arena here; its own tail
      // allocation is printed by the sz line of id 0)
      LoggingAllocator la(g_arena, kArena);
      void* pb = la.AllocatePersistentBuffer(sizeof(tflite::GreedyMemoryPlanner),
                                             alignof(tflite::GreedyMemoryPlanner));
      auto* planner = new (pb) tflite::GreedyMemoryPlanner();
      tflite::MicroAllocator* ma = tflite::MicroAllocator::Create(&la, planner);
      tflite::MicroInterpreter it(model, g_resolver, ma);
      TfLiteStatus s = it.AllocateTensors();
      epv_print("used2", m, s == kTfLiteOk ? (uint32_t)it.arena_used_bytes() : 0xffffffffu);
      epv_print("head", m, (uint32_t)la.GetNonPersistentUsedBytes());
    }
  }
  epv_print("done", 0, 0);
  return 0;
}

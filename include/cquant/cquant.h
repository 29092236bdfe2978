/* cquant: PyTorch 1.13's quantization system in C. One header for the whole public API. */
#ifndef CQUANT_H
#define CQUANT_H

#define CQ_VERSION_STRING "0.1.0"

#include "cquant/status.h"
#include "cquant/qparams.h"
#include "cquant/tensor.h"
#include "cquant/quantize.h"
#include "cquant/observer.h"
#include "cquant/qconfig.h"
#include "cquant/npy.h"
#include "cquant/quantization.h"
#include "cquant/threads.h"
#include "cquant/idx.h"
#include "cquant/nn.h"
#include "cquant/modules.h"
#include "cquant/graph.h"
#include "cquant/safetensors.h"
#include "cquant/onnx.h"
#include "cquant/graph_mode.h"

#endif

/* The seed's observer example in C:
 *
 *   observers = [MinMaxObserver(), MovingAverageMinMaxObserver(), HistogramObserver()]
 *   for obs in observers:
 *     for x in inputs: obs(x)
 *     print(obs.__class__.__name__, obs.calculate_qparams())
 *
 * prints the observer, its scale and zero point, and its state as PyTorch prints it. Build with
 * `make`, run ./build/examples/seed_observers. */
#include <stdio.h>

#include "cquant/cquant.h"

int main(void) {
  const int64_t shape[2] = {3, 4}; /* C, L = 3, 4 */
  const float inputs[2][12] = {
      {-0.0590f, 1.1674f, 0.7119f, -1.1270f, -1.3974f, 0.5077f, -0.5601f, 0.0683f, -0.0929f,
       0.9473f, 0.7159f, -0.4574f},
      {-0.0236f, -0.7599f, 1.0290f, 0.8914f, -1.1727f, -1.2556f, -0.2271f, 0.9568f, -0.2500f,
       1.4579f, 1.4707f, 0.4043f},
  };
  const cq_observer_kind kinds[3] = {CQ_OBSERVER_MINMAX, CQ_OBSERVER_MOVING_AVERAGE_MINMAX,
                                     CQ_OBSERVER_HISTOGRAM};
  for (int i = 0; i < 3; i++) {
    cq_observer_config config = cq_observer_defaults(kinds[i]); /* PyTorch's defaults */
    cq_observer *obs;
    if (cq_observer_create(&config, &obs) != CQ_OK) {
      fprintf(stderr, "%s\n", cq_last_error());
      return 1;
    }
    for (int b = 0; b < 2; b++) {
      if (cq_observer_update(obs, inputs[b], 2, shape) != CQ_OK) {
        fprintf(stderr, "%s\n", cq_last_error());
        cq_observer_free(obs);
        return 1;
      }
    }
    cq_qparams qp;
    if (cq_observer_qparams(obs, &qp) != CQ_OK) {
      fprintf(stderr, "%s\n", cq_last_error());
      cq_observer_free(obs);
      return 1;
    }
    char repr[256];
    cq_observer_repr(obs, repr, sizeof repr);
    printf("%s scale=%.4f zero_point=%d  %s\n", cq_observer_class_name(kinds[i]), qp.scale[0],
           qp.zero_point[0], repr);
    cq_qparams_release(&qp);
    cq_observer_free(obs);
  }
  return 0;
}

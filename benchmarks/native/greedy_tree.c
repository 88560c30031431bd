/* Greedy minimum-entropy coupling (Kocaoglu et al., AAAI 2017, Algorithm 1) in C: the
 * compiled reference that benchmarks/bench_coupling.py times beside entropylab's kernels
 * to show what native code reaches on the same CPU.
 *
 * Each of the B couplings of P[b, :n] and Q[b, :m] (float64, row-major) keeps one
 * tournament tree per marginal (winner index per node, ties to the lower index, the
 * same order as heapq's (-value, index) pairs and as entropylab). Each of the n + m - 1
 * steps takes both roots, assigns r = min of their residuals to the cell, subtracts r
 * and replays the two leaf-to-root paths, interleaved, with branch-free selects. Steps after a
 * marginal is used up assign mass 0. The batch is split over OpenMP threads when the
 * file is compiled with -fopenmp.
 *
 * Output: mass[b, s], row[b, s], col[b, s] for s < n + m - 1.
 */
#include <stdlib.h>

static int tree_width(int n) {
  int size = 1;
  while (size < n) size <<= 1;
  return size;
}

static void build(const double *x, int n, int size, double *value, int *node) {
  for (int i = 0; i < size; i++) {
    value[i] = i < n ? x[i] : -1.0;
    node[size + i] = i;
  }
  for (int v = size - 1; v >= 1; v--) {
    int a = node[2 * v], b = node[2 * v + 1];
    node[v] = value[b] > value[a] ? b : a;
  }
}

void greedy_tree_batch(const double *P, const double *Q, int B, int n, int m,
                       double *mass, int *row, int *col) {
  /* Both trees get the width of the longer marginal, so their paths have one length. */
  const int size = tree_width(n > m ? n : m), steps = n + m - 1;
#pragma omp parallel
  {
    double *vp = malloc(sizeof(double) * size), *vq = malloc(sizeof(double) * size);
    int *tp = malloc(sizeof(int) * 2 * size), *tq = malloc(sizeof(int) * 2 * size);
#pragma omp for schedule(static)
    for (int b = 0; b < B; b++) {
      build(P + (long)b * n, n, size, vp, tp);
      build(Q + (long)b * m, m, size, vq, tq);
      double *mo = mass + (long)b * steps;
      int *ro = row + (long)b * steps, *co = col + (long)b * steps;
      for (int s = 0; s < steps; s++) {
        int i = tp[1], j = tq[1];
        double a = vp[i], c = vq[j], r = a < c ? a : c;
        mo[s] = r;
        ro[s] = i;
        co[s] = j;
        vp[i] = a - r;
        vq[j] = c - r;
        /* Both paths in one loop: independent work that the CPU overlaps. */
        for (int u = (size + i) >> 1, w = (size + j) >> 1; u >= 1; u >>= 1, w >>= 1) {
          int x = tp[2 * u], y = tp[2 * u + 1], z = tq[2 * w], t = tq[2 * w + 1];
          tp[u] = vp[y] > vp[x] ? y : x;
          tq[w] = vq[t] > vq[z] ? t : z;
        }
      }
    }
    free(vp); free(vq); free(tp); free(tq);
  }
}

/* Threads the batch loop uses (1 without OpenMP). */
#ifdef _OPENMP
#include <omp.h>
int greedy_tree_threads(void) { return omp_get_max_threads(); }
#else
int greedy_tree_threads(void) { return 1; }
#endif

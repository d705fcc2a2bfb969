/* The nearest-neighbour distances of the Wang–Kulkarni–Verdú KL estimator (kldiv.estimate.knn).
 *
 * One call builds a KD-tree over x and one over y, then, for every x_i, finds ρ_k(i), the k-th
 * smallest distance to a point of x, and ν_k(i), the k-th smallest to a point of y, counting
 * only points at positive distance (so x_i itself, and any copy of it, is skipped: the rule of
 * the Python module). With `within` it also counts, for the adaptive variant, the points of x
 * and of y at distance in (0, max(ρ, ν)] and the largest such distance.
 *
 * Two norms: the Euclidean (the default) and the max-norm (Chebyshev, `chebyshev` = 1), which
 * NPEET and KSG-style estimators use. Distances equal scipy.spatial.cKDTree's (p = 2 and
 * p = inf) bit for bit. Euclidean: the squared distance is summed in the same order as scipy's
 * sqeuclidean_distance_double (four running sums over blocks of four coordinates, added left
 * to right, then the remaining coordinates one by one), without contraction into FMA (setup.py
 * compiles in ISO C mode, where GCC does not contract), and the distance is its correctly
 * rounded square root. Max-norm: the largest absolute coordinate difference, which is exact
 * whatever the order. Below, a "squared distance" is the max-norm distance itself under the
 * max-norm; only the final square root is left out.
 *
 * Pruning is exact too. A node's lower bound is the same sum over the gaps between the query
 * and the node's tight bounding box, and each gap is at most the matching coordinate
 * difference of every point in the box; IEEE rounding is monotone, so the bound computed in
 * floating point is at most every computed point distance, and a node is skipped only when
 * none of its points could change the answer.
 *
 * Speed comes from locality: the points are stored in the trees' leaf order, coordinate by
 * coordinate, so that a leaf scan is a few vector loops; the queries run in x's leaf order, so
 * consecutive queries touch the same nodes; and the trees are built on two threads.
 */
#include "common.h"

#include <math.h>
#include <stdlib.h>

#define LEAF_SIZE 16 /* points per leaf block */
#define MAX_DEPTH 128

/* Points are stored in blocks of LEAF_SIZE, coordinate-major inside a block: coordinate i of
 * the point at position p is coords[(p / LEAF_SIZE) * LEAF_SIZE * d + i * LEAF_SIZE +
 * p % LEAF_SIZE]. Nodes split at multiples of LEAF_SIZE, so every leaf is whole blocks (the
 * last block is padded with infinite coordinates, which are never at a finite distance). */
struct tree {
    Py_ssize_t n;
    int d;
    double *coords;
    Py_ssize_t *order;  /* order[position] = row of the input */
    Py_ssize_t *start;  /* per node: first position (a multiple of LEAF_SIZE) */
    Py_ssize_t *end;    /* per node: one past the last position */
    int32_t *left;      /* per node: left child, -1 for a leaf */
    int32_t *right;     /* per node: right child */
    double *low, *high; /* per node: tight bounding box, d each */
    int32_t nodes;
};

static void tree_free(struct tree *tree) {
    free(tree->coords);
    free(tree->order);
    free(tree->start);
    free(tree->end);
    free(tree->left);
    free(tree->right);
    free(tree->low);
    free(tree->high);
    memset(tree, 0, sizeof *tree);
}

/* Squared distance in scipy's order; `gap(i)` is the i-th coordinate difference (nonnegative
 * under the max-norm, where the result is the largest gap). */
#define KL_SQUARED_SUM(result, d, gap, cheb)                                                 \
    do {                                                                                     \
        if (cheb) {                                                                          \
            double max_ = 0.0;                                                               \
            for (int i_ = 0; i_ < (d); ++i_) {                                               \
                double g_ = gap(i_);                                                         \
                max_ = g_ > max_ ? g_ : max_;                                                \
            }                                                                                \
            (result) = max_;                                                                 \
            break;                                                                           \
        }                                                                                    \
        int full_ = (d) & ~3;                                                                \
        double acc0_ = 0.0, acc1_ = 0.0, acc2_ = 0.0, acc3_ = 0.0;                           \
        for (int b_ = 0; b_ < full_; b_ += 4) {                                              \
            double g0_ = gap(b_), g1_ = gap(b_ + 1), g2_ = gap(b_ + 2), g3_ = gap(b_ + 3);   \
            acc0_ += g0_ * g0_;                                                              \
            acc1_ += g1_ * g1_;                                                              \
            acc2_ += g2_ * g2_;                                                              \
            acc3_ += g3_ * g3_;                                                              \
        }                                                                                    \
        double sum_ = acc0_ + acc1_ + acc2_ + acc3_;                                         \
        for (int i_ = full_; i_ < (d); ++i_) {                                               \
            double g_ = gap(i_);                                                             \
            sum_ += g_ * g_;                                                                 \
        }                                                                                    \
        (result) = sum_;                                                                     \
    } while (0)

KLDIV_INLINE double positive_part(double value) { return value > 0.0 ? value : 0.0; }

/* Lower bound on the squared distance from q to any point of the box [low, high]. At most one
 * of the two parts of a gap is nonzero, and adding 0 is exact, so the gap is low - q, q - high
 * or 0; written this way it needs no branches. */
KLDIV_INLINE double box_distance(const double *q, const double *low, const double *high, int d,
                                 int cheb) {
    double gaps[d];
    for (int i = 0; i < d; ++i) gaps[i] = positive_part(low[i] - q[i]) + positive_part(q[i] - high[i]);
#define BOX_GAP(i) gaps[i]
    double result;
    KL_SQUARED_SUM(result, d, BOX_GAP, cheb);
    return result;
#undef BOX_GAP
}

/* Squared distances from q to the LEAF_SIZE points of one block, in scipy's order. */
KLDIV_INLINE void block_distances(const double *q, const double *block, int d, int cheb,
                                  double *out) {
    double acc[4][LEAF_SIZE];
    int full = d & ~3;
    for (int j = 0; j < LEAF_SIZE; ++j) out[j] = 0.0;
    if (cheb) {
        /* fabs(inf) of the padding is inf, never a finite distance, as in the Euclidean case */
        for (int i = 0; i < d; ++i) {
            const double *c = block + i * LEAF_SIZE;
            double qv = q[i];
            for (int j = 0; j < LEAF_SIZE; ++j) {
                double g = fabs(qv - c[j]);
                out[j] = g > out[j] ? g : out[j];
            }
        }
        return;
    }
    if (full) {
        for (int r = 0; r < 4; ++r)
            for (int j = 0; j < LEAF_SIZE; ++j) acc[r][j] = 0.0;
        for (int b = 0; b < full; b += 4) {
            for (int r = 0; r < 4; ++r) {
                const double *c = block + (b + r) * LEAF_SIZE;
                double qv = q[b + r];
                for (int j = 0; j < LEAF_SIZE; ++j) {
                    double g = qv - c[j];
                    acc[r][j] += g * g;
                }
            }
        }
        for (int j = 0; j < LEAF_SIZE; ++j) out[j] = acc[0][j] + acc[1][j] + acc[2][j] + acc[3][j];
    }
    for (int i = full; i < d; ++i) {
        const double *c = block + i * LEAF_SIZE;
        double qv = q[i];
        for (int j = 0; j < LEAF_SIZE; ++j) {
            double g = qv - c[j];
            out[j] += g * g;
        }
    }
}

KLDIV_INLINE const double *tree_block(const struct tree *t, Py_ssize_t position) {
    return t->coords + position / LEAF_SIZE * LEAF_SIZE * t->d;
}

/* ---- building ---- */

struct builder {
    struct tree *tree;
    const double *points; /* n × d, row-major */
    double *keys;         /* scratch: one coordinate of the points of a node */
};

static void select_nth(double *keys, Py_ssize_t *rows, Py_ssize_t count, Py_ssize_t nth) {
    Py_ssize_t lo = 0, hi = count - 1;
    while (hi > lo) {
        double pivot = keys[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (keys[i] < pivot) ++i;
            while (keys[j] > pivot) --j;
            if (i <= j) {
                double key = keys[i];
                keys[i] = keys[j];
                keys[j] = key;
                Py_ssize_t row = rows[i];
                rows[i] = rows[j];
                rows[j] = row;
                ++i;
                --j;
            }
        }
        if (nth <= j)
            hi = j;
        else if (nth >= i)
            lo = i;
        else
            return;
    }
}

static int32_t build_node(struct builder *b, Py_ssize_t start, Py_ssize_t end) {
    struct tree *t = b->tree;
    int d = t->d;
    int32_t node = t->nodes++;
    double *low = t->low + (Py_ssize_t)node * d, *high = t->high + (Py_ssize_t)node * d;
    const double *first = b->points + t->order[start] * d;
    for (int i = 0; i < d; ++i) low[i] = high[i] = first[i];
    for (Py_ssize_t p = start + 1; p < end; ++p) {
        const double *point = b->points + t->order[p] * d;
        for (int i = 0; i < d; ++i) {
            low[i] = point[i] < low[i] ? point[i] : low[i];
            high[i] = point[i] > high[i] ? point[i] : high[i];
        }
    }
    t->start[node] = start;
    t->end[node] = end;
    t->left[node] = t->right[node] = -1;
    int widest = 0;
    for (int i = 1; i < d; ++i)
        if (high[i] - low[i] > high[widest] - low[widest]) widest = i;
    /* A node of copies of one point cannot be split: it stays one leaf, however long. */
    if (end - start <= LEAF_SIZE || high[widest] == low[widest]) return node;
    /* Split at the median rounded to whole blocks, on the widest coordinate. */
    Py_ssize_t blocks = (end - start + LEAF_SIZE - 1) / LEAF_SIZE;
    Py_ssize_t middle = start + blocks / 2 * LEAF_SIZE;
    for (Py_ssize_t p = start; p < end; ++p) b->keys[p] = b->points[t->order[p] * d + widest];
    select_nth(b->keys + start, t->order + start, end - start, middle - start);
    t->left[node] = build_node(b, start, middle);
    t->right[node] = build_node(b, middle, end);
    return node;
}

/* Builds `tree` over the n × d points; returns 0 on success, -1 when memory runs out. */
static int tree_build(struct tree *tree, const double *points, Py_ssize_t n, int d) {
    memset(tree, 0, sizeof *tree);
    tree->n = n;
    tree->d = d;
    Py_ssize_t blocks = (n + LEAF_SIZE - 1) / LEAF_SIZE;
    Py_ssize_t capacity = 2 * blocks; /* a binary tree with at most one leaf per block */
    double *keys = malloc((size_t)n * sizeof(double));
    tree->coords = malloc((size_t)blocks * LEAF_SIZE * (size_t)d * sizeof(double));
    tree->order = malloc((size_t)n * sizeof(Py_ssize_t));
    tree->start = malloc((size_t)capacity * sizeof(Py_ssize_t));
    tree->end = malloc((size_t)capacity * sizeof(Py_ssize_t));
    tree->left = malloc((size_t)capacity * sizeof(int32_t));
    tree->right = malloc((size_t)capacity * sizeof(int32_t));
    tree->low = malloc((size_t)capacity * (size_t)d * sizeof(double));
    tree->high = malloc((size_t)capacity * (size_t)d * sizeof(double));
    if (!keys || !tree->coords || !tree->order || !tree->start || !tree->end || !tree->left ||
        !tree->right || !tree->low || !tree->high) {
        free(keys);
        tree_free(tree);
        return -1;
    }
    for (Py_ssize_t p = 0; p < n; ++p) tree->order[p] = p;
    struct builder builder = {tree, points, keys};
    build_node(&builder, 0, n);
    free(keys);
    for (Py_ssize_t p = 0; p < blocks * LEAF_SIZE; ++p) {
        double *block = tree->coords + p / LEAF_SIZE * LEAF_SIZE * d;
        for (int i = 0; i < d; ++i)
            block[i * LEAF_SIZE + p % LEAF_SIZE] = p < n ? points[tree->order[p] * d + i] : INFINITY;
    }
    return 0;
}

/* ---- searching ---- */

struct stack_entry {
    int32_t node;
    double bound;
};

/* Lower bound on the squared distance between a point of box [low_a, high_a] and one of box
 * [low_b, high_b]: each gap is at most the matching coordinate difference of any such pair. */
KLDIV_INLINE double boxes_distance(const double *low_a, const double *high_a,
                                   const double *low_b, const double *high_b, int d, int cheb) {
    double gaps[d];
    for (int i = 0; i < d; ++i)
        gaps[i] = positive_part(low_b[i] - high_a[i]) + positive_part(low_a[i] - high_b[i]);
#define BOX_GAP(i) gaps[i]
    double result;
    KL_SQUARED_SUM(result, d, BOX_GAP, cheb);
    return result;
#undef BOX_GAP
}

/* The queries of one block: up to LEAF_SIZE points searched together through one tree. */
struct group {
    int count;
    const double *block; /* the x-tree block of the queries, coordinate by coordinate */
    double *q;          /* LEAF_SIZE × d: the queries' coordinates, one query after another */
    double *low, *high; /* d each: the queries' bounding box */
    double worst[LEAF_SIZE]; /* squared k-th positive distance so far, inf until k are found */
    int found[LEAF_SIZE];
    int zeros[LEAF_SIZE]; /* points at distance 0 */
};

/* Scans one leaf for query j of the group, keeping its k smallest positive squared distances
 * in best (ascending). */
KLDIV_INLINE void scan_leaf(const struct tree *t, int32_t node, const double *q, int d, int cheb,
                            int k, double *best, double *worst, int *found, int *zeros) {
    double distances[LEAF_SIZE];
    for (Py_ssize_t p = t->start[node]; p < t->end[node]; p += LEAF_SIZE) {
        block_distances(q, tree_block(t, p), d, cheb, distances);
        double nearest = INFINITY;
        int zero_count = 0;
        for (int j = 0; j < LEAF_SIZE; ++j) {
            double distance = distances[j];
            zero_count += distance == 0.0;
            nearest = distance > 0.0 && distance < nearest ? distance : nearest;
        }
        *zeros += zero_count;
        if (nearest >= *worst) continue;
        if (k == 1) {
            *worst = best[0] = nearest;
            *found = 1;
            continue;
        }
        for (int j = 0; j < LEAF_SIZE; ++j) {
            double distance = distances[j];
            if (distance < *worst && distance > 0.0) {
                int slot = *found < k ? (*found)++ : k - 1;
                while (slot > 0 && best[slot - 1] > distance) {
                    best[slot] = best[slot - 1];
                    --slot;
                }
                best[slot] = distance;
                if (*found == k) *worst = best[k - 1];
            }
        }
    }
}

/* bound[j] = the squared distance from query j of the group to the box [low, high]; returns
 * whether any query is nearer to the box than its k-th distance so far. One vector loop over
 * the queries, whose coordinates the block holds coordinate by coordinate. */
KLDIV_INLINE int any_query_nearer(const struct group *g, const double *low, const double *high,
                                  int d, int cheb, double *bound) {
    int nearer = 0;
    for (int j = 0; j < LEAF_SIZE; ++j) {
#define QUERY_GAP(i)                                                                         \
    (positive_part(low[i] - g->block[(i) * LEAF_SIZE + j]) +                                 \
     positive_part(g->block[(i) * LEAF_SIZE + j] - high[i]))
        double distance;
        KL_SQUARED_SUM(distance, d, QUERY_GAP, cheb);
#undef QUERY_GAP
        bound[j] = distance;
        nearer |= distance < g->worst[j];
    }
    return nearer;
}

/* For every query of the group, the k-th smallest positive squared distance to the tree's
 * points (group->worst, inf if fewer than k are positive) and the number of points at
 * distance 0 (group->zeros). The tree is walked once for the group, the child nearer to the
 * group's box first; a node is entered only when some query is nearer to its box than that
 * query's k-th distance so far, and a leaf is scanned only for those queries. `best` is
 * scratch for k entries per query. */
KLDIV_INLINE void group_kth_positive(const struct tree *t, struct group *g, int d, int cheb,
                                     int k, double *best) {
    struct stack_entry stack[MAX_DEPTH];
    double bound[LEAF_SIZE];
    int top = 0;
    double group_worst = INFINITY;
    for (int j = 0; j < LEAF_SIZE; ++j) {
        g->worst[j] = INFINITY; /* and so for the padding after the last query */
        g->found[j] = 0;
        g->zeros[j] = 0;
    }
    int32_t node = 0;
    for (;;) {
        const double *low = t->low + (Py_ssize_t)node * d, *high = t->high + (Py_ssize_t)node * d;
        if (!any_query_nearer(g, low, high, d, cheb, bound)) {
            /* every query's k-th distance is at most its bound: nothing here can lower it */
        } else if (t->left[node] < 0) {
            group_worst = 0.0;
            for (int j = 0; j < g->count; ++j) {
                if (bound[j] < g->worst[j])
                    scan_leaf(t, node, g->q + j * d, d, cheb, k, best + (Py_ssize_t)j * k,
                              &g->worst[j], &g->found[j], &g->zeros[j]);
                group_worst = g->worst[j] > group_worst ? g->worst[j] : group_worst;
            }
        } else {
            int32_t near = t->left[node], far = t->right[node];
            double near_bound = boxes_distance(g->low, g->high, t->low + (Py_ssize_t)near * d,
                                               t->high + (Py_ssize_t)near * d, d, cheb);
            double far_bound = boxes_distance(g->low, g->high, t->low + (Py_ssize_t)far * d,
                                              t->high + (Py_ssize_t)far * d, d, cheb);
            if (far_bound < near_bound) {
                int32_t swap = near;
                near = far;
                far = swap;
                double swap_bound = near_bound;
                near_bound = far_bound;
                far_bound = swap_bound;
            }
            if (far_bound < group_worst) stack[top++] = (struct stack_entry){far, far_bound};
            if (near_bound < group_worst) {
                node = near;
                continue;
            }
        }
        /* A point at distance 0 from a query lies in boxes at bound 0 from it and from the
         * group, below any k-th distance, so every copy is still seen. */
        while (top > 0 && stack[top - 1].bound >= group_worst) --top;
        if (top == 0) break;
        node = stack[--top].node;
    }
}

/* Counts the points at distance in (0, radius] from q, and returns the largest such distance
 * in *farthest (distances compared after the square root, as the Python path does). */
KLDIV_INLINE double count_within(const struct tree *t, const double *q, int d, int cheb,
                                 double radius, double *farthest) {
    double distances[LEAF_SIZE];
    int32_t stack[MAX_DEPTH];
    int top = 0;
    double count = 0.0, largest = 0.0;
    stack[top++] = 0;
    while (top > 0) {
        int32_t node = stack[--top];
        /* sqrt is monotone, so this bound is at most every distance in the box. */
        double bound = box_distance(q, t->low + (Py_ssize_t)node * d,
                                    t->high + (Py_ssize_t)node * d, d, cheb);
        if ((cheb ? bound : sqrt(bound)) > radius) continue;
        if (t->left[node] >= 0) {
            stack[top++] = t->right[node];
            stack[top++] = t->left[node];
            continue;
        }
        for (Py_ssize_t p = t->start[node]; p < t->end[node]; p += LEAF_SIZE) {
            block_distances(q, tree_block(t, p), d, cheb, distances);
            for (int j = 0; j < LEAF_SIZE; ++j) {
                double distance = cheb ? distances[j] : sqrt(distances[j]);
                int inside = distance > 0.0 && distance <= radius;
                count += inside ? 1.0 : 0.0;
                largest = inside && distance > largest ? distance : largest;
            }
        }
    }
    *farthest = largest;
    return count;
}

struct query_job {
    const struct tree *x, *y;
    int k;
    int chebyshev;     /* 1: max-norm, 0: Euclidean */
    double *rho, *nu;  /* per row of x */
    double *within;    /* NULL, or 4 × n: l count, largest ρ, k count, largest ν */
    double *scratch;   /* scratch_size per thread, handed out in turn */
    Py_ssize_t scratch_size;
    int next_scratch;
    Py_ssize_t blocks, next_block; /* blocks of x, and the next one no thread has taken */
    int64_t copies[2]; /* rows with a copy in x, in y */
};

/* Answers the queries of the blocks of x, a few blocks at a time, taking them in turn with
 * the other threads: a thread slowed down by other work on its core then takes fewer. The
 * dimension d is a constant where the caller passes one, so that the compiler unrolls the
 * coordinate loops. */
KLDIV_INLINE void query_blocks(struct query_job *job, int d, int cheb) {
    const struct tree *x = job->x;
    int k = job->k;
    int slot = __atomic_fetch_add(&job->next_scratch, 1, __ATOMIC_RELAXED);
    double *best = job->scratch + slot * job->scratch_size;
    struct group g;
    g.q = best + k * LEAF_SIZE;
    g.low = g.q + LEAF_SIZE * d;
    g.high = g.low + d;
    int64_t copies_x = 0, copies_y = 0;
    Py_ssize_t n = x->n;
    for (;;) {
        Py_ssize_t b = __atomic_fetch_add(&job->next_block, 1, __ATOMIC_RELAXED);
        if (b >= job->blocks) break;
        Py_ssize_t first = b * LEAF_SIZE;
        const double *block = tree_block(x, first);
        g.block = block;
        g.count = n - first < LEAF_SIZE ? (int)(n - first) : LEAF_SIZE;
        for (int i = 0; i < d; ++i) {
            g.low[i] = g.high[i] = block[i * LEAF_SIZE];
            for (int j = 0; j < g.count; ++j) {
                double value = block[i * LEAF_SIZE + j];
                g.q[j * d + i] = value;
                g.low[i] = value < g.low[i] ? value : g.low[i];
                g.high[i] = value > g.high[i] ? value : g.high[i];
            }
        }
        double rho[LEAF_SIZE];
        int zeros_x[LEAF_SIZE];
        group_kth_positive(x, &g, d, cheb, k, best);
        for (int j = 0; j < g.count; ++j) {
            rho[j] = g.found[j] == k ? (cheb ? g.worst[j] : sqrt(g.worst[j])) : -1.0;
            zeros_x[j] = g.zeros[j];
        }
        group_kth_positive(job->y, &g, d, cheb, k, best);
        for (int j = 0; j < g.count; ++j) {
            double nu = g.found[j] == k ? (cheb ? g.worst[j] : sqrt(g.worst[j])) : -1.0;
            Py_ssize_t row = x->order[first + j];
            copies_x += zeros_x[j] > 1; /* the first zero is x_i itself */
            copies_y += g.zeros[j] > 0;
            job->rho[row] = rho[j];
            job->nu[row] = nu;
            if (job->within && rho[j] > 0.0 && nu > 0.0) {
                double radius = rho[j] > nu ? rho[j] : nu, farthest;
                job->within[row] = count_within(x, g.q + j * d, d, cheb, radius, &farthest);
                job->within[n + row] = farthest;
                job->within[2 * n + row] =
                    count_within(job->y, g.q + j * d, d, cheb, radius, &farthest);
                job->within[3 * n + row] = farthest;
            }
        }
    }
    __atomic_fetch_add(&job->copies[0], copies_x, __ATOMIC_RELAXED);
    __atomic_fetch_add(&job->copies[1], copies_y, __ATOMIC_RELAXED);
}

KLDIV_TARGETS
static void query_range(void *context, Py_ssize_t begin, Py_ssize_t end) {
    (void)begin, (void)end; /* one call per thread; the blocks are handed out in query_blocks */
    struct query_job *job = (struct query_job *)context;
#define KL_QUERY_BY_DIMENSION(cheb)                                                          \
    switch (job->x->d) {                                                                     \
    case 1: query_blocks(job, 1, cheb); break;                                               \
    case 2: query_blocks(job, 2, cheb); break;                                               \
    case 3: query_blocks(job, 3, cheb); break;                                               \
    case 4: query_blocks(job, 4, cheb); break;                                               \
    case 5: query_blocks(job, 5, cheb); break;                                               \
    case 6: query_blocks(job, 6, cheb); break;                                               \
    case 7: query_blocks(job, 7, cheb); break;                                               \
    case 8: query_blocks(job, 8, cheb); break;                                               \
    default: query_blocks(job, job->x->d, cheb);                                             \
    }
    if (job->chebyshev) {
        KL_QUERY_BY_DIMENSION(1)
    } else {
        KL_QUERY_BY_DIMENSION(0)
    }
#undef KL_QUERY_BY_DIMENSION
}

struct build_job {
    struct tree trees[2];
    const double *points[2];
    Py_ssize_t sizes[2];
    int d;
    int failed[2];
};

static void build_range(void *context, Py_ssize_t begin, Py_ssize_t end) {
    struct build_job *job = (struct build_job *)context;
    for (Py_ssize_t i = begin; i < end; ++i)
        job->failed[i] = tree_build(&job->trees[i], job->points[i], job->sizes[i], job->d);
}

static int check_buffer(const Py_buffer *buffer, Py_ssize_t entries, Py_ssize_t item,
                        const char *name) {
    if (buffer->len != entries * item) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zd entries of %zd bytes, got %zd bytes",
                     name, entries, item, buffer->len);
        return -1;
    }
    return 0;
}

static PyObject *neighbour_distances(PyObject *self, PyObject *args) {
    Py_buffer x, y, rho, nu, copies, within = {0};
    int d, k, threads, chebyshev = 0;
    PyObject *within_object = Py_None;
    if (!PyArg_ParseTuple(args, "y*y*iiiw*w*w*|Op", &x, &y, &d, &k, &threads, &rho, &nu,
                          &copies, &within_object, &chebyshev))
        return NULL;
    PyObject *result = NULL;
    int has_within = within_object != Py_None;
    if (has_within && PyObject_GetBuffer(within_object, &within, PyBUF_WRITABLE) < 0) {
        has_within = -1;
        goto done;
    }
    if (d < 1 || k < 1) {
        PyErr_SetString(PyExc_ValueError, "dimension and k must be at least 1");
        goto done;
    }
    Py_ssize_t n = x.len / (Py_ssize_t)(d * sizeof(double));
    Py_ssize_t m = y.len / (Py_ssize_t)(d * sizeof(double));
    if (check_buffer(&x, n * d, sizeof(double), "x") < 0 ||
        check_buffer(&y, m * d, sizeof(double), "y") < 0 ||
        check_buffer(&rho, n, sizeof(double), "rho") < 0 ||
        check_buffer(&nu, n, sizeof(double), "nu") < 0 ||
        check_buffer(&copies, 2, sizeof(int64_t), "copies") < 0 ||
        (has_within && check_buffer(&within, 4 * n, sizeof(double), "within") < 0))
        goto done;
    if (n < 1 || m < 1) {
        PyErr_SetString(PyExc_ValueError, "x and y need at least one point each");
        goto done;
    }
    Py_ssize_t query_blocks_count = (n + LEAF_SIZE - 1) / LEAF_SIZE;
    if (threads > query_blocks_count) threads = (int)query_blocks_count; /* idle threads cost */
    if (threads > KL_MAX_THREADS) threads = KL_MAX_THREADS;
    if (threads < 1) threads = 1;
    /* Per thread: k best distances for each query of a block, the block's coordinates, and
     * its bounding box. */
    Py_ssize_t scratch_size = (Py_ssize_t)k * LEAF_SIZE + (Py_ssize_t)(LEAF_SIZE + 2) * d;
    double *scratch = malloc((size_t)threads * (size_t)scratch_size * sizeof(double));
    struct build_job build = {.points = {x.buf, y.buf}, .sizes = {n, m}, .d = d};
    int failed;
    Py_BEGIN_ALLOW_THREADS
    kl_parallel_for(threads < 2 ? 1 : 2, 2, build_range, &build);
    failed = build.failed[0] || build.failed[1] || scratch == NULL;
    if (!failed) {
        struct query_job job = {&build.trees[0], &build.trees[1], k, chebyshev, rho.buf, nu.buf,
                                has_within ? within.buf : NULL, scratch, scratch_size, 0,
                                query_blocks_count, 0, {0, 0}};
        kl_parallel_for(threads, threads, query_range, &job);
        memcpy(copies.buf, job.copies, sizeof job.copies);
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    tree_free(&build.trees[0]);
    tree_free(&build.trees[1]);
    if (failed)
        PyErr_NoMemory();
    else
        result = Py_NewRef(Py_None);
done:
    if (has_within == 1) PyBuffer_Release(&within);
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    PyBuffer_Release(&rho);
    PyBuffer_Release(&nu);
    PyBuffer_Release(&copies);
    return result;
}

static PyMethodDef methods[] = {
    {"neighbour_distances", neighbour_distances, METH_VARARGS,
     "neighbour_distances(x, y, d, k, threads, rho, nu, copies, within=None, chebyshev=False)\n\n"
     "For each row of x (n × d float64, C order) against x and against y (m × d): rho[i] and\n"
     "nu[i] get the k-th smallest positive distance (-1 where fewer than k points are at\n"
     "positive distance), Euclidean or, with chebyshev true, in the max-norm; copies (2 int64)\n"
     "gets the number of rows with an exact copy in x and in y. With within (4 × n float64):\n"
     "the count of points of x at distance in (0, max(rho, nu)], the largest such distance,\n"
     "and the same two for y."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kldiv._native.knn",
                                    "k-nearest-neighbour distances of the KL estimator.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_knn(void) { return PyModule_Create(&module); }

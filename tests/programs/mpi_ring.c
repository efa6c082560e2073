/* mpi_ring: every rank passes a token around the ring N times; rank 0 prints a step per lap.
 * Each rank folds the token into its own sum; the result combines every rank's sum (reduced
 * to rank 0). Output protocol of tests/src/lib.rs (rank 0 prints). Deterministic.
 * Usage: mpi_ring LAPS DELAY_MS */
/* Without MPI headers (Debian's openmpi-bin and mpich ship none: the -dev packages do), so with
 * the ABI of the library linked: Open MPI's (libmpi.so.40, the default) or, built with
 * -DMPICH_ABI, MPICH's (libmpich.so.12: handles are ints, constants from its mpi.h). */
#ifdef MPICH_ABI
typedef int MPI_Comm, MPI_Datatype, MPI_Op;
#define MPI_COMM_WORLD ((MPI_Comm)0x44000000)
#define MPI_UNSIGNED_LONG ((MPI_Datatype)0x4c000808)
#define MPI_BXOR ((MPI_Op)0x5800000a)
#define MPI_STATUS_IGNORE ((void *)1)
#else
typedef void *MPI_Comm, *MPI_Datatype, *MPI_Op;
extern char ompi_mpi_comm_world[], ompi_mpi_unsigned_long[], ompi_mpi_op_bxor[];
#define MPI_COMM_WORLD ((MPI_Comm)ompi_mpi_comm_world)
#define MPI_UNSIGNED_LONG ((MPI_Datatype)ompi_mpi_unsigned_long)
#define MPI_BXOR ((MPI_Op)ompi_mpi_op_bxor)
#define MPI_STATUS_IGNORE ((void *)0)
#endif
int MPI_Init(int *, char ***);
int MPI_Finalize(void);
int MPI_Comm_rank(MPI_Comm, int *);
int MPI_Comm_size(MPI_Comm, int *);
int MPI_Send(const void *, int, MPI_Datatype, int, int, MPI_Comm);
int MPI_Recv(void *, int, MPI_Datatype, int, int, MPI_Comm, void *);
int MPI_Reduce(const void *, void *, int, MPI_Datatype, MPI_Op, int, MPI_Comm);
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long laps = argc > 1 ? atol(argv[1]) : 100;
    long delay = argc > 2 ? atol(argv[2]) : 20;
    if (rank == 0) {
        printf("start mpi_ring ranks=%d laps=%ld\n", size, laps);
        fflush(stdout);
    }
    unsigned long sum = 0;
    for (long lap = 1; lap <= laps; lap++) {
        unsigned long token;
        if (rank == 0) {
            token = (unsigned long)lap * 2654435761UL;
            MPI_Send(&token, 1, MPI_UNSIGNED_LONG, 1 % size, 0, MPI_COMM_WORLD);
            MPI_Recv(&token, 1, MPI_UNSIGNED_LONG, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(&token, 1, MPI_UNSIGNED_LONG, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            token = token * 6364136223846793005UL + (unsigned long)rank;
            MPI_Send(&token, 1, MPI_UNSIGNED_LONG, (rank + 1) % size, 0, MPI_COMM_WORLD);
        }
        sum = sum * 31 + token + (unsigned long)(rank + 1) * (unsigned long)lap;
        if (rank == 0) {
            printf("step %ld token=%lu\n", lap, token);
            fflush(stdout);
        }
        struct timespec ts = {delay / 1000, (delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    unsigned long total = 0;
    MPI_Reduce(&sum, &total, 1, MPI_UNSIGNED_LONG, MPI_BXOR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("result %016lx\n", total);
        fflush(stdout);
    }
    MPI_Finalize();
    return 0;
}

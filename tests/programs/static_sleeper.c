/* static_sleeper: waits until killed. Linked statically by the tests (the runtime cannot be
 * loaded into it): a process of a tree that never joins it (process_trees_join). */
#include <unistd.h>

int main(void)
{
    for (;;)
        pause();
}

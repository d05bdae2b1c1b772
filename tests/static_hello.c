/* tests/static_hello.c: a statically linked program (status_cli_test:
   `usmc run` warns that it cannot interpose it). */
#include <stdio.h>

int main(void) {
  puts("hello");
  return 0;
}

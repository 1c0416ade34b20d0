#include <stdio.h>
#include "calc.h"

int main(void) {
    int failures = 0;
    failures += multiply(3, 4) != 12;
    failures += multiply(-2, 5) != -10;
    failures += multiply(0, 99) != 0;
    printf("test_calc: %d failure(s)\n", failures);
    return failures != 0;
}

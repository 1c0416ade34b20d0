#include "calc.h"

long multiply(long a, long b) { return a * b; }

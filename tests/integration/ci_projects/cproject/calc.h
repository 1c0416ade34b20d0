long multiply(long a, long b);

#include "wire/llc.h"
#include <gtest/gtest.h>

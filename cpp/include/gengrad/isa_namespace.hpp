// Every header with inline code lives in a namespace named after the instruction set its
// translation unit is compiled for, so builds for different instruction sets never share (and
// the linker never merges) an inline function. CMake defines GENGRAD_ISA_NS per kernel build.
#pragma once

#ifndef GENGRAD_ISA_NS
#define GENGRAD_ISA_NS portable
#endif

package benchkit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestKnobsFromTheEnvironment(t *testing.T) {
	assert.Equal(t, []int{1, 2}, Ints(t, "BENCHKIT_TEST_INTS", []int{1, 2}, 1), "unset: the default")
	t.Setenv("BENCHKIT_TEST_INTS", "1000, 20")
	assert.Equal(t, []int{1000, 20}, Ints(t, "BENCHKIT_TEST_INTS", nil, 10))
	assert.Equal(t, 3*time.Second, Duration(t, "BENCHKIT_TEST_DURATION", 3*time.Second), "unset: the default")
	t.Setenv("BENCHKIT_TEST_DURATION", "250ms")
	assert.Equal(t, 250*time.Millisecond, Duration(t, "BENCHKIT_TEST_DURATION", time.Second))
}

func TestMedianAndCPU(t *testing.T) {
	v := []float64{5, 1, 3}
	assert.Equal(t, 3.0, Median(v))
	assert.Equal(t, []float64{5, 1, 3}, v, "Median leaves its input as it was")
	assert.Equal(t, 3.0, Median([]float64{4, 1, 3, 2}), "even count: the upper middle")
	before := ProcessCPU()
	for x := 0; x < 50_000_000; x++ {
		v[0] += float64(x & 1)
	}
	assert.Greater(t, ProcessCPU(), before, "CPU time grows while the process works")
}
